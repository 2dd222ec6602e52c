"""Fraud reads: what the batch scan and the moderation workflow look at.

The score ledger (``score_history``) is read here directly, read-only: the queries are specific to
fraud review and ``scores.selectors`` belongs to the score app.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.db.models import Count, Sum

from fraud.models import FraudLog
from scores.models import ScoreHistory

HISTORY_IDS_MAX = 1000


@dataclass(frozen=True)
class PlayerPoints:
    user_id: str
    points: int
    actions: int


def recent_points_by_player(*, since: dt.datetime) -> list[PlayerPoints]:
    """Points and actions per active player applied since ``since`` (reversals excluded)."""
    rows = (
        ScoreHistory.objects.filter(created_at__gte=since, kind=ScoreHistory.Kind.ACTION, user__is_active=True)
        .values("user_id")
        .annotate(points=Sum("score_increment"), actions=Count("id"))
        .order_by()
    )
    return [PlayerPoints(user_id=str(r["user_id"]), points=int(r["points"]), actions=int(r["actions"])) for r in rows]


def shared_ip_clusters(*, since: dt.datetime, min_accounts: int) -> dict[str, list[str]]:
    """Addresses from which at least ``min_accounts`` active players scored since ``since``."""
    ips = [
        str(r["ip_address"])
        for r in ScoreHistory.objects.filter(
            created_at__gte=since, kind=ScoreHistory.Kind.ACTION, ip_address__isnull=False, user__is_active=True
        )
        .values("ip_address")
        .annotate(accounts=Count("user_id", distinct=True))
        .filter(accounts__gte=min_accounts)
        .order_by()
    ]
    clusters: dict[str, list[str]] = {}
    for ip in ips:
        users = (
            ScoreHistory.objects.filter(created_at__gte=since, ip_address=ip, user__is_active=True)
            .values_list("user_id", flat=True)
            .distinct()
            .order_by()
        )
        clusters[ip] = sorted(str(u) for u in users)
    return clusters


def recent_action_ids(*, user_id: str, since: dt.datetime, ip: str | None = None) -> list[str]:
    """Ids of the player's applied actions since ``since`` (optionally from one address), newest first."""
    actions = ScoreHistory.objects.filter(user_id=user_id, created_at__gte=since, kind=ScoreHistory.Kind.ACTION)
    if ip is not None:
        actions = actions.filter(ip_address=ip)
    return [str(pk) for pk in actions.order_by("-created_at").values_list("id", flat=True)[:HISTORY_IDS_MAX]]


def batch_log_exists(*, user_id: str, event_type: str, since: dt.datetime) -> bool:
    return FraudLog.objects.filter(
        user_id=user_id, decision=FraudLog.Decision.BATCH, event_type=event_type, created_at__gte=since
    ).exists()


def actions_in_question(*, fraud_log: FraudLog) -> list[ScoreHistory]:
    """The applied, not yet reversed actions a fraud log is about: its linked row and any the scan listed."""
    ids = [str(fraud_log.score_history_id)] if fraud_log.score_history_id else []
    ids += [str(i) for i in fraud_log.metadata.get("history_ids", []) if isinstance(i, str)]
    if not ids or fraud_log.user_id is None:
        return []
    return list(
        ScoreHistory.objects.filter(
            pk__in=ids, user_id=fraud_log.user_id, kind=ScoreHistory.Kind.ACTION, reversals__isnull=True
        ).order_by("created_at")
    )
