"""Fraud reads: what the batch scan and the moderation workflow look at.

The score ledger (``score_history``) is read here directly, read-only: the queries are specific to
fraud review and ``scores.selectors`` belongs to the score app.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.db.models import Count, Q, Sum

from fraud.models import FraudLog, ModerationAction
from scores.models import ScoreHistory

HISTORY_IDS_MAX = 1000
INCIDENT_BURST_GAP_SECONDS = 120


@dataclass(frozen=True)
class IncidentPreview:
    """What confirming a fraud log would do, shown before the click."""

    username: str
    current_score: int
    is_active: bool
    is_quarantined: bool
    actions: list[ScoreHistory]
    points_to_remove: int  # on the global board (users.current_score)

    @property
    def score_after(self) -> int:
        return self.current_score - self.points_to_remove


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


def players_over_budget(*, since: dt.datetime, budgets: dict[str, int]) -> dict[str, tuple[str, int]]:
    """Active players whose points of one action type since ``since`` reach that type's budget:
    user id -> (action type, points), the type furthest over its budget."""
    rows = (
        ScoreHistory.objects.filter(
            created_at__gte=since, kind=ScoreHistory.Kind.ACTION, user__is_active=True, action_type__in=list(budgets)
        )
        .values("user_id", "action_type")
        .annotate(points=Sum("score_increment"))
        .order_by()
    )
    over: dict[str, tuple[str, int]] = {}
    for r in rows:
        action_type, points = str(r["action_type"]), int(r["points"])
        budget = budgets[action_type]
        if points < budget:
            continue
        user_id = str(r["user_id"])
        seen = over.get(user_id)
        if seen is None or points / budget > seen[1] / budgets[seen[0]]:
            over[user_id] = (action_type, points)
    return over


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


def incident_actions(*, fraud_log: FraudLog) -> list[ScoreHistory]:
    """What confirming ``fraud_log`` reverses: the actions in question, plus — for a log of the engine
    — every applied, not yet reversed action of the player since the first suspicious one.

    The first suspicious action is the earliest history row linked to one of the logs of the
    incident (``FraudLog.incident``; one that starts with a block starts at the block), extended
    back over the actions just before it, each within ``INCIDENT_BURST_GAP_SECONDS`` of the next.
    Play before the burst stays.
    """
    in_question = {h.pk: h for h in actions_in_question(fraud_log=fraud_log)}
    if fraud_log.user_id is None or fraud_log.decision == FraudLog.Decision.BATCH:
        return sorted(in_question.values(), key=lambda h: h.created_at)
    window_start = fraud_log.created_at - dt.timedelta(hours=1)
    head = fraud_log.incident_head_id
    incident = FraudLog.objects.filter(Q(pk=head) | Q(incident_id=head), user_id=fraud_log.user_id).exclude(
        decision=FraudLog.Decision.BATCH
    )
    linked = ScoreHistory.objects.filter(fraud_logs__in=incident).order_by("created_at").first()
    first_log = incident.filter(status=FraudLog.Status.OPEN).order_by("created_at").first() or fraud_log
    start = min(linked.created_at, first_log.created_at) if linked is not None else first_log.created_at
    # The burst began with the actions just before, each within INCIDENT_BURST_GAP of the next (a
    # bot's first submission is under every threshold; it is still part of the burst).
    earlier = ScoreHistory.objects.filter(
        user_id=fraud_log.user_id, kind=ScoreHistory.Kind.ACTION, created_at__lt=start, created_at__gte=window_start
    ).order_by("-created_at")
    for created_at in earlier.values_list("created_at", flat=True)[:HISTORY_IDS_MAX]:
        if (start - created_at).total_seconds() > INCIDENT_BURST_GAP_SECONDS:
            break
        start = created_at
    since = ScoreHistory.objects.filter(
        user_id=fraud_log.user_id, kind=ScoreHistory.Kind.ACTION, created_at__gte=start, reversals__isnull=True
    )
    for history in since:
        in_question.setdefault(history.pk, history)
    return sorted(in_question.values(), key=lambda h: h.created_at)


def incident_preview(*, fraud_log: FraudLog) -> IncidentPreview | None:
    if fraud_log.user_id is None:
        return None
    from accounts.models import User

    player = User.objects.filter(pk=fraud_log.user_id).first()
    if player is None:
        return None
    actions = incident_actions(fraud_log=fraud_log)
    return IncidentPreview(
        username=player.username,
        current_score=player.current_score,
        is_active=player.is_active,
        is_quarantined=player.is_quarantined,
        actions=actions,
        points_to_remove=sum(h.score_increment for h in actions),
    )


def player_last_decision(*, user_id: str) -> ModerationAction | None:
    """The latest confirmation or release about the player (who banned or released them, when, why)."""
    return (
        ModerationAction.objects.filter(
            fraud_log__user_id=user_id,
            action__in=[ModerationAction.Action.CONFIRM, ModerationAction.Action.RELEASE],
        )
        .select_related("fraud_log")
        .order_by("-created_at")
        .first()
    )


def incident_logs(*, fraud_log: FraudLog) -> list[FraudLog]:
    """Every log of the incident ``fraud_log`` belongs to, oldest first."""
    head = fraud_log.incident_head_id
    return list(FraudLog.objects.filter(Q(pk=head) | Q(incident_id=head)).order_by("created_at"))
