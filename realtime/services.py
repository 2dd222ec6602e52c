"""Broadcast entry points used by the score service.

Placeholder until the live-board issue lands: nothing is pushed yet.
"""

from __future__ import annotations

from scores.ranking import Board


def score_changed(*, board: Board, user_id: str, score: int, old_rank: int | None, new_rank: int | None) -> None:
    """A committed score change: push the board if its top changed, and the player's rank_update."""


def board_corrected(*, board: Board) -> None:
    """A moderator correction: push the board if its top changed."""
