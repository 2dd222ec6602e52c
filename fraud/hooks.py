"""The one hook the score service carries for the fraud engine: counting rejected action tokens.

``scores.services.score_submit`` is decorated with ``rejected_tokens_counted``: when it refuses an
action token (forged, expired, from the future, another player's, or replayed) the refusal is counted
for the player and the address, which the token-abuse rule reads. The exception is re-raised as is.
This module imports nothing from the score app, so the score service can import it at load time.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from scoreboard.errors import ApiError

logger = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")

REJECTED_TOKEN_CODES = frozenset(
    {
        "invalid_action_token",
        "action_token_expired",
        "action_token_from_future",
        "action_token_user_mismatch",
        "action_token_replayed",
    }
)


def rejected_tokens_counted(func: Callable[P, R]) -> Callable[P, R]:
    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except ApiError as exc:
            if exc.code in REJECTED_TOKEN_CODES:
                from fraud import services

                try:
                    services.token_rejection_record(
                        user=kwargs.get("user"),  # type: ignore[arg-type]
                        context=kwargs.get("context"),  # type: ignore[arg-type]
                        code=exc.code,
                    )
                except Exception:  # counting must never change the answer the player gets
                    logger.exception("could not count a rejected action token")
            raise

    return wrapper
