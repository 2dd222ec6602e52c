"""Personal data in score history (addresses, user agents): cleared by age, or for one player."""

from __future__ import annotations

import datetime as dt
import uuid

from scoreboard.retention import personal_data_clear
from scores.models import ScoreHistory


def score_history_personal_data_clear(*, older_than: dt.datetime) -> int:
    """Clear addresses and user agents of rows created before ``older_than``; returns how many rows."""
    return personal_data_clear(ScoreHistory.objects.filter(created_at__lt=older_than))


def player_history_personal_data_clear(*, user_id: uuid.UUID | str) -> int:
    """Clear one player's addresses and user agents, whatever their age (the player's erasure)."""
    return personal_data_clear(ScoreHistory.objects.filter(user_id=user_id))
