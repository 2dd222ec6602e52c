"""Score Celery tasks: thin wrappers around ``scores.services`` (scheduled by CELERY_BEAT_SCHEDULE)."""

from __future__ import annotations

import contextlib
import datetime as dt
from dataclasses import asdict
from typing import Any

from celery import shared_task
from django.conf import settings
from django.db import DatabaseError
from django.utils import timezone

from scoreboard.redis import REDIS_ERRORS, get_redis
from scores import board_services, services


def nonce_retention_seconds() -> int:
    """A used nonce matters while its token could still verify: the token window plus a margin."""
    return (
        settings.ACTION_TOKEN_MAX_AGE_SECONDS
        + settings.ACTION_TOKEN_MAX_FUTURE_SECONDS
        + settings.NONCE_RETENTION_MARGIN_SECONDS
    )


@shared_task(name="scores.used_nonces_purge", autoretry_for=(DatabaseError,), retry_backoff=True, max_retries=3)
def used_nonces_purge_task() -> int:
    """Delete used nonces whose tokens can no longer verify; returns how many were deleted."""
    older_than = timezone.now() - dt.timedelta(seconds=nonce_retention_seconds())
    return services.used_nonces_purge(older_than=older_than)


# Set by scores.recovery when a reconnect queues this task, so that many processes noticing one
# outage queue one repair; removed when the task starts, so that an outage beginning during a repair
# queues the next one instead of being swallowed.
REPAIR_QUEUED_KEY = "sb:recovery:repair-queued"


def _repair_started() -> None:
    client = get_redis()
    if client is None:
        return
    with contextlib.suppress(*REDIS_ERRORS):  # Redis is down again: the check fails and is retried
        client.delete(REPAIR_QUEUED_KEY)


@shared_task(
    name="scores.leaderboard_drift_check",
    autoretry_for=(DatabaseError, *REDIS_ERRORS),
    retry_backoff=True,
    max_retries=3,
)
def leaderboard_drift_check_task() -> dict[str, Any]:
    """Compare every live board index with PostgreSQL and repair the players that differ."""
    _repair_started()
    return asdict(services.leaderboard_drift_check(repair=True))


@shared_task(
    name="scores.board_periods_maintain",
    autoretry_for=(DatabaseError,),
    retry_backoff=True,
    max_retries=3,
)
def board_periods_maintain_task() -> dict[str, Any]:
    """Close due board periods, drop expired live indexes, prune old archives."""
    return asdict(board_services.board_periods_maintain())
