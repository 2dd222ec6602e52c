"""Personal data in fraud logs (addresses, user agents): cleared by age, or for one player."""

from __future__ import annotations

import datetime as dt
import uuid

from fraud.models import FraudLog
from scoreboard.retention import personal_data_clear


def fraud_log_personal_data_clear(*, older_than: dt.datetime) -> int:
    """Clear addresses and user agents of logs created before ``older_than``; returns how many logs."""
    return personal_data_clear(FraudLog.objects.filter(created_at__lt=older_than))


def player_fraud_logs_personal_data_clear(*, user_id: uuid.UUID | str) -> int:
    """Clear one player's addresses and user agents in fraud logs, whatever their age (erasure)."""
    return personal_data_clear(FraudLog.objects.filter(user_id=user_id))
