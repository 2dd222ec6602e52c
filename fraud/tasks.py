"""Fraud Celery tasks: thin wrappers; the logic is in ``fraud.services``."""

from __future__ import annotations

from celery import shared_task
from django.db import DatabaseError

from fraud import services


@shared_task(name="fraud.batch_scan", autoretry_for=(DatabaseError,), retry_backoff=True, max_retries=3)
def fraud_batch_scan_task() -> dict[str, int]:
    """Velocity outliers and shared-IP clusters over the last window -> batch fraud logs."""
    return services.fraud_batch_scan().as_dict()
