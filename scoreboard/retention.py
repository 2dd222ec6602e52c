"""Personal data kept only as long as needed: client addresses and user agents in score history
and fraud logs are cleared after ``PERSONAL_DATA_RETENTION_DAYS`` (default 90) by a beat task
(``scoreboard.personal_data_retention``); the rows themselves stay, they are the audit trail."""

from __future__ import annotations

from typing import Any

from django.db.models import Q, QuerySet

BATCH = 5000


def personal_data_clear(rows: QuerySet[Any]) -> int:
    """Set ``ip_address`` to NULL and ``user_agent`` to "" on ``rows``, in batches (no long lock on
    a large table); returns how many rows held any."""
    model = rows.model
    holding = rows.filter(Q(ip_address__isnull=False) | ~Q(user_agent="")).order_by()  # no sort: any batch
    cleared = 0
    while ids := list(holding.values_list("pk", flat=True)[:BATCH]):
        cleared += model.objects.filter(pk__in=ids).update(ip_address=None, user_agent="")
    return cleared
