"""Account Celery tasks: thin wrappers around ``accounts.services`` (scheduled by CELERY_BEAT_SCHEDULE)."""

from __future__ import annotations

from celery import shared_task
from django.db import DatabaseError

from accounts import services


@shared_task(
    name="accounts.outstanding_tokens_purge", autoretry_for=(DatabaseError,), retry_backoff=True, max_retries=3
)
def outstanding_tokens_purge_task() -> int:
    """Delete expired outstanding refresh tokens and their blacklist entries; returns how many."""
    return services.outstanding_tokens_purge()
