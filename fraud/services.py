"""Fraud engine entry points used by the score service.

Placeholder until the anti-cheat issue lands: every attempt scores 0 (allowed).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from accounts.models import User
    from scores.action_tokens import ActionClaims
    from scores.services import RequestContext


@dataclass(frozen=True)
class Assessment:
    risk_score: float = 0.0
    reasons: list[dict[str, object]] = field(default_factory=list)


def score_attempt_assess(*, user: User, claims: ActionClaims, context: RequestContext) -> Assessment:
    """Risk of this attempt in [0, 1]; raises 429 when at or above the block threshold."""
    return Assessment()


def score_applied_record(
    *, user: User, claims: ActionClaims, context: RequestContext, assessment: Assessment, history_id: str
) -> None:
    """Feed an applied action into the per-player windows; log it when it was flagged."""
