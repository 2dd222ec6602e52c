"""Project-wide Celery tasks (scheduled by CELERY_BEAT_SCHEDULE)."""

from __future__ import annotations

import datetime as dt

from celery import shared_task
from django.conf import settings
from django.db import DatabaseError
from django.utils import timezone

from fraud.retention import fraud_log_personal_data_clear
from scores.retention import score_history_personal_data_clear


@shared_task(
    name="scoreboard.personal_data_retention", autoretry_for=(DatabaseError,), retry_backoff=True, max_retries=3
)
def personal_data_retention_task() -> dict[str, int]:
    """Clear addresses and user agents older than PERSONAL_DATA_RETENTION_DAYS in history and fraud logs."""
    older_than = timezone.now() - dt.timedelta(days=settings.PERSONAL_DATA_RETENTION_DAYS)
    return {
        "score_history": score_history_personal_data_clear(older_than=older_than),
        "fraud_logs": fraud_log_personal_data_clear(older_than=older_than),
    }
