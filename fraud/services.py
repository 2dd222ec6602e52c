"""The fraud engine (called by the score service) and the moderation workflow (called by admin).

Per attempt: ``score_attempt_assess`` records the attempt in the player's window, runs the rules
(``fraud.rules``) and returns an ``Assessment``. At or above ``FRAUD_BLOCK_THRESHOLD`` it writes a
blocked fraud log and raises 429; between the flag and block thresholds the score is applied and
``score_applied_record`` writes a flagged log linked to the history row. A block threshold above 1
turns blocking off (load tests).

Moderation: ``fraud_log_confirm`` bans the player and reverses the actions in question (compensating
history rows, re-index, board broadcast — all through ``scores.services``); ``fraud_log_dismiss``
closes the log. Both write a ``ModerationAction`` (who, when, why) in the same transaction.
"""

from __future__ import annotations

import datetime as dt
import logging
import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import DatabaseError, transaction
from django.db.models import Q
from django.utils import timezone

from accounts import services as account_services
from accounts.models import User
from fraud import population, rules, selectors, windows
from fraud.models import FraudLog, ModerationAction
from scoreboard import metrics
from scoreboard.errors import ApiError, Conflict, TooManyRequests
from scores import events as score_events
from scores import services as score_services

if TYPE_CHECKING:
    from scores.action_tokens import ActionClaims
    from scores.services import RequestContext

logger = logging.getLogger(__name__)
security_log = logging.getLogger("scoreboard.security")

USER_AGENT_MAX_LENGTH = 1000
INCIDENT_WINDOW_SECONDS = 3600  # a player's logs within an hour of the first open one are one incident
ALLOW, FLAG, QUARANTINE, BLOCK = "allow", "flag", "quarantine", "block"


def _now() -> float:
    """The engine's clock (Unix seconds); one place, so simulations can drive it."""
    return time.time()


_config_cache: dict[tuple[int, int], rules.RuleConfig] = {}


def rule_config() -> rules.RuleConfig:
    """The rules' configuration, built once per (ACTION_TYPES, FRAUD_RULE_PARAMS) settings objects."""
    key = (id(settings.ACTION_TYPES), id(settings.FRAUD_RULE_PARAMS))
    config = _config_cache.get(key)
    if config is None:
        params: dict[str, Any] = dict(settings.FRAUD_RULE_PARAMS)
        config = rules.RuleConfig(action_types=rules.action_rules_from_settings(settings.ACTION_TYPES), **params)
        if len(_config_cache) > 16:  # tests override settings many times
            _config_cache.clear()
        _config_cache[key] = config
    return config


def _decision(risk_score: float, blocking_score: float | None = None, statistical: bool = True) -> str:
    """``blocking_score``: the risk without the quarantine-only rules (``rules.QUARANTINE_ONLY``);
    ``statistical``: whether one of those rules fired.

    Statistical evidence can hide a player but never refuse an update; the fixed-threshold rules
    alone flag or block but never quarantine: two of them together (8 updates in a minute and one
    perfect level) are what a keen human does, worth a moderator's look, not a shadow ban.
    """
    if (risk_score if blocking_score is None else blocking_score) >= settings.FRAUD_BLOCK_THRESHOLD:
        return BLOCK
    # Quarantine never starts below the flag threshold: switching flagging off switches it off too.
    if statistical and risk_score >= max(settings.FRAUD_QUARANTINE_THRESHOLD, settings.FRAUD_FLAG_THRESHOLD):
        return QUARANTINE
    if risk_score >= settings.FRAUD_FLAG_THRESHOLD:
        return FLAG
    return ALLOW


@dataclass(frozen=True)
class Assessment:
    risk_score: float = 0.0
    reasons: list[dict[str, object]] = field(default_factory=list)
    decision: str = ALLOW
    primary_rule: str = ""
    window_source: str = ""
    # The attempt repeated one already seen (its once keys were set): not recorded, not assessed.
    repeat: bool = False

    @property
    def flagged(self) -> bool:
        return self.decision == FLAG

    @property
    def quarantined(self) -> bool:
        return self.decision == QUARANTINE

    @property
    def blocked(self) -> bool:
        return self.decision == BLOCK


def _signals(
    *,
    user: User,
    claims: ActionClaims,
    context: RequestContext,
    now: float,
    once_keys: Sequence[str] = (),
    once_ttl: int = 0,
) -> tuple[rules.Signals, windows.WindowView]:
    user_id = str(user.pk)
    attempt = rules.Attempt(
        submitted_at=now,
        action_timestamp=claims.timestamp,
        action_type=claims.action_type,
        score_increment=claims.score_increment,
        action_id=claims.action_id,
    )
    window = windows.attempt_record_and_load(
        user_id=user_id,
        ip=context.ip_address,
        attempt=attempt,
        once_keys=once_keys,
        once_ttl=once_ttl,
        user_agent=context.user_agent,
        increment_tail=population.increment_tail(claims.action_type, claims.score_increment),
        counters=getattr(context, "limits", None),
        card=getattr(context, "card", None),
    )
    pairs = {(claims.action_type, claims.score_increment), *((a.action_type, a.score_increment) for a in window.recent)}
    return rules.Signals(
        now=now,
        action_type=claims.action_type,
        score_increment=claims.score_increment,
        action_timestamp=claims.timestamp,
        action_id=claims.action_id,
        recent=window.recent,
        account_age_seconds=max(0.0, now - user.date_joined.timestamp()),
        score_before=user.current_score,
        ip_address=context.ip_address,
        accounts_on_ip=window.accounts_on_ip,
        rejected_tokens_player=window.rejected_tokens_player,
        rejected_tokens_ip=window.rejected_tokens_ip,
        velocity=window.velocity,
        increment_tails=population.tails_for(pairs),
        clusters=window.clusters,
        gap_tail=population.gap_tail,
    ), window


def score_attempt_assess(
    *,
    user: User,
    claims: ActionClaims,
    context: RequestContext,
    once_keys: Sequence[str] = (),
    once_ttl: int = 0,
) -> Assessment:
    """Risk of this attempt in [0, 1]. At or above the block threshold: a blocked fraud log and 429.

    Side effects: the attempt joins the player's window (blocked attempts too, so a bot that keeps
    trying stays blocked); a blocked attempt writes a ``fraud_logs`` row in its own transaction.
    With ``once_keys`` (see ``fraud.windows.attempt_record_and_load``) an attempt already seen is
    neither recorded nor assessed: the answer is ``Assessment(repeat=True)`` and the caller decides.
    """
    signals, window = _signals(
        user=user, claims=claims, context=context, now=_now(), once_keys=once_keys, once_ttl=once_ttl
    )
    if window.repeat:
        return Assessment(repeat=True, window_source=window.source)
    source = window.source
    verdict = rules.assess(signals, rule_config(), settings.FRAUD_RULE_WEIGHTS)
    assessment = Assessment(
        risk_score=verdict.risk_score,
        reasons=[f.as_dict() for f in verdict.fired],
        decision=_decision(verdict.risk_score, verdict.blocking_score, verdict.statistical),
        primary_rule=verdict.primary_rule,
        window_source=source,
    )
    if assessment.blocked and score_services.original_result(claims) is not None:
        # A replay of an applied action (the Redis pre-filter was not there to say so): replay comes
        # before fraud (DESIGN), so let the score service answer 409 with the original result.
        return replace(assessment, decision=ALLOW)
    if assessment.blocked:
        metrics.FRAUD_DETECTIONS.labels(outcome="blocked").inc()
        log = _log_write(
            user=user, claims=claims, context=context, assessment=assessment, decision=FraudLog.Decision.BLOCKED
        )
        security_log.warning(
            "fraud engine blocked a score update user_id=%s risk=%.2f rules=%s",
            user.pk,
            assessment.risk_score,
            ",".join(str(r["rule"]) for r in assessment.reasons),
        )
        raise TooManyRequests(
            "This score update was held back as suspicious and not applied. "
            "If this is a mistake, contact support with the reference.",
            code="fraud_blocked",
            retry_after=settings.FRAUD_BLOCK_RETRY_AFTER_SECONDS,
            details={"reference": str(log.pk)},
        )
    return assessment


def score_applied_record(
    *, user: User, claims: ActionClaims, context: RequestContext, assessment: Assessment, history_id: str
) -> None:
    """After the score was applied: a flagged attempt gets a fraud log linked to its history row.

    The score is already committed, so a failure here must not turn the answer into "nothing was
    applied" (503): it is logged instead, and the batch scan still sees the history row.
    """
    if not (assessment.flagged or assessment.quarantined):
        return
    outcome = "quarantined" if assessment.quarantined else "flagged"
    metrics.FRAUD_DETECTIONS.labels(outcome=outcome).inc()
    try:
        with transaction.atomic():
            _log_write(
                user=user,
                claims=claims,
                context=context,
                assessment=assessment,
                decision=FraudLog.Decision.QUARANTINED if assessment.quarantined else FraudLog.Decision.FLAGGED,
                history_id=history_id,
            )
            if assessment.quarantined:
                player_quarantine(user_id=str(user.pk))
    except DatabaseError:
        logger.exception("could not write the fraud log of %s action %s", outcome, claims.action_id)
    if assessment.quarantined:
        security_log.warning(
            "fraud engine quarantined user_id=%s risk=%.2f rules=%s",
            user.pk,
            assessment.risk_score,
            ",".join(str(r["rule"]) for r in assessment.reasons),
        )


def player_quarantine(*, user_id: str) -> bool:
    """Shadow-ban the player: scores still apply, public boards leave them out. True if newly quarantined.

    The boards are re-indexed and re-broadcast after commit (``scores.services.player_standing_changed``).
    """
    changed = User.objects.filter(pk=user_id, is_quarantined=False).update(is_quarantined=True) > 0
    if changed:
        score_services.player_standing_changed(user_id=user_id)
    return changed


def submission_applied(event: score_events.SubmissionApplied) -> None:
    """The score app's event after a committed submission (see ``scores.events``)."""
    score_applied_record(
        user=event.user,
        claims=event.claims,
        context=event.context,
        assessment=event.assessment,
        history_id=event.history_id,
    )


def _rules_field(names: list[str]) -> str:
    return f",{','.join(names)}," if names else ""


def _log_write(
    *,
    user: User,
    claims: ActionClaims,
    context: RequestContext,
    assessment: Assessment,
    decision: str,
    history_id: str | None = None,
) -> FraudLog:
    head = (
        FraudLog.objects.filter(
            user=user,
            status=FraudLog.Status.OPEN,
            incident__isnull=True,
            created_at__gte=timezone.now() - dt.timedelta(seconds=INCIDENT_WINDOW_SECONDS),
        )
        .exclude(decision=FraudLog.Decision.BATCH)
        .order_by("created_at")
        .values_list("pk", flat=True)
        .first()
    )
    return FraudLog.objects.create(
        user=user,
        incident_id=head,
        event_type=assessment.primary_rule or "risk",
        decision=decision,
        risk_score=Decimal(f"{assessment.risk_score:.2f}"),
        rules=_rules_field([str(r["rule"]) for r in assessment.reasons]),
        metadata={
            "rules": assessment.reasons,
            "action": {
                "action_id": claims.action_id,
                "action_type": claims.action_type,
                "score_increment": claims.score_increment,
                "timestamp": claims.timestamp,
            },
            "thresholds": {"flag": settings.FRAUD_FLAG_THRESHOLD, "block": settings.FRAUD_BLOCK_THRESHOLD},
            "window": assessment.window_source,
        },
        ip_address=context.ip_address,
        user_agent=context.user_agent[:USER_AGENT_MAX_LENGTH],
        score_history_id=history_id,
    )


def token_rejection_record(*, user: User | None, context: RequestContext | None, code: str) -> None:
    """A rejected action token (invalid, expired, foreign, replayed) feeds the token-abuse rule."""
    windows.token_rejection_record(
        user_id=str(user.pk) if user is not None else None,
        ip=context.ip_address if context is not None else None,
        now=_now(),
    )


# ---------------------------------------------------------------------------------------------
# Moderation
# ---------------------------------------------------------------------------------------------
REASON_MAX_LENGTH = 2000


def _reason_clean(reason: str) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise ApiError("A reason is required for every moderation action.", code="reason_required")
    return reason[:REASON_MAX_LENGTH]


def _open_log_lock(fraud_log: FraudLog) -> FraudLog:
    log = FraudLog.objects.select_for_update().get(pk=fraud_log.pk)
    if log.status != FraudLog.Status.OPEN:
        raise Conflict(f"This fraud log was already {log.status}.", code="fraud_log_closed")
    return log


def _player_ban(*, user_id: str) -> bool:
    """Disable the account (JWT auth refuses it with 403; refresh is refused) and drop it from boards.

    True if this call banned the player, False if they were already banned.
    """
    banned = User.objects.filter(pk=user_id, is_active=True).update(is_active=False) > 0
    score_services.player_standing_changed(user_id=user_id)
    if banned:  # every session ends and the player's open sockets close (after the commit)
        account_services.player_sessions_revoke(user_id=user_id, reason="banned by a moderator")
    return banned


def fraud_log_confirm(*, fraud_log: FraudLog, moderator: User, reason: str) -> ModerationAction:
    """Confirm cheating: ban the player, reverse the actions in question, audit. One transaction.

    The actions in question are the log's own (its history row, or the ones the batch scan listed)
    and, for a player of the engine, every action of the player since the first suspicious one of the
    incident (``selectors.incident_actions``). The audit row says what actually happened: whether
    this banned the player or they were already banned, the rows reversed and the points removed.
    Raises 409 when the log is no longer open (another moderator acted first), 400 without a reason.
    The index update and the board broadcast run after commit (inside ``scores.services``).
    """
    reason = _reason_clean(reason)
    with transaction.atomic():
        log = _open_log_lock(fraud_log)
        details: dict[str, Any] = {
            "banned_user_id": None,
            "ban": "no player",
            "reversed_history_ids": [],
            "points_removed": 0,
        }
        if log.user_id is not None:
            user_id = str(log.user_id)
            newly = _player_ban(user_id=user_id)
            details["banned_user_id"] = user_id if newly else None
            details["ban"] = "banned" if newly else "already banned"
            for history in selectors.incident_actions(fraud_log=log):
                reversal = score_services.score_reverse(
                    history=history, reason=f"fraud log {log.pk} confirmed by {moderator.username}: {reason}"
                )
                details["reversed_history_ids"].append(str(history.pk))
                details["points_removed"] += -reversal.score_increment
        action = _close(
            log, moderator=moderator, reason=reason, action=ModerationAction.Action.CONFIRM, details=details
        )
    security_log.warning(
        "fraud log %s confirmed by %s: player %s %s, %d action(s) reversed, %d points removed",
        log.pk,
        moderator.username,
        log.user_id,
        details["ban"],
        len(details["reversed_history_ids"]),
        details["points_removed"],
    )
    return action


MANUAL_STANDING_EVENT = "moderator_standing"


def player_standing_set(*, user_id: str, active: bool, moderator: User, reason: str) -> ModerationAction:
    """A moderator bans (``active=False``) or unbans a player by hand (the player page in admin).

    Audited like every other moderator action: a closed fraud log of the player records the
    decision, and its audit row says what happened ("banned", "already banned", "unbanned", "already
    active"). A ban ends every session and closes the player's sockets; either way the player's
    boards are re-indexed and re-broadcast after the commit. Nothing is reversed: confirming a fraud
    log is how points are removed.
    """
    reason = _reason_clean(reason)
    with transaction.atomic():
        if active:
            changed = User.objects.filter(pk=user_id, is_active=False).update(is_active=True) > 0
            if changed:
                score_services.player_standing_changed(user_id=user_id)
            outcome = "unbanned" if changed else "already active"
        else:
            outcome = "banned" if _player_ban(user_id=user_id) else "already banned"
        log = FraudLog.objects.create(
            user_id=user_id,
            event_type=MANUAL_STANDING_EVENT,
            decision=FraudLog.Decision.BATCH,
            risk_score=Decimal("0"),
            metadata={"source": "admin", "outcome": outcome},
            status=FraudLog.Status.OPEN,
        )
        action = _close(
            log,
            moderator=moderator,
            reason=reason,
            action=ModerationAction.Action.CONFIRM if not active else ModerationAction.Action.DISMISS,
            details={"ban": outcome, "points_removed": 0, "reversed_history_ids": [], "source": "admin"},
        )
    security_log.warning("player %s %s by %s in the admin: %s", user_id, outcome, moderator.username, reason)
    return action


def player_release(*, fraud_log: FraudLog, moderator: User, reason: str) -> ModerationAction:
    """Release a quarantined player: back on the public boards with their score, boards re-broadcast.

    Closes the log as dismissed with a ``release`` audit row; the player's other open quarantine logs
    are closed with it (one incident). 409 when the log is closed, 400 without a reason.
    """
    reason = _reason_clean(reason)
    with transaction.atomic():
        log = _open_log_lock(fraud_log)
        released = False
        closed: list[str] = []
        if log.user_id is not None:
            user_id = str(log.user_id)
            released = User.objects.filter(pk=user_id, is_quarantined=True).update(is_quarantined=False) > 0
            others = (
                FraudLog.objects.select_for_update()
                .filter(user_id=user_id, status=FraudLog.Status.OPEN, decision=FraudLog.Decision.QUARANTINED)
                .exclude(pk=log.pk)
            )
            now = timezone.now()
            for other in others:
                other.status = FraudLog.Status.DISMISSED
                other.reviewed_by, other.reviewed_at = moderator, now
                other.review_note = f"released with fraud log {log.pk}: {reason}"
                other.save(update_fields=["status", "reviewed_by", "reviewed_at", "review_note"])
                closed.append(str(other.pk))
            score_services.player_standing_changed(user_id=user_id)
        return _close(
            log,
            moderator=moderator,
            reason=reason,
            action=ModerationAction.Action.RELEASE,
            details={"released": released, "also_closed": closed},
        )


def fraud_log_dismiss(*, fraud_log: FraudLog, moderator: User, reason: str) -> ModerationAction:
    """Close a fraud log as a false positive; the score stays. Audited like a confirmation."""
    reason = _reason_clean(reason)
    with transaction.atomic():
        log = _open_log_lock(fraud_log)
        return _close(log, moderator=moderator, reason=reason, action=ModerationAction.Action.DISMISS, details={})


def _close(log: FraudLog, *, moderator: User, reason: str, action: str, details: dict[str, Any]) -> ModerationAction:
    """Close the log and every other open log of its incident with one decision and one audit row."""
    now = timezone.now()
    status = FraudLog.Status.CONFIRMED if action == ModerationAction.Action.CONFIRM else FraudLog.Status.DISMISSED
    head = log.incident_head_id
    incident = (
        FraudLog.objects.select_for_update()
        .filter(status=FraudLog.Status.OPEN)
        .filter(Q(pk=head) | Q(incident_id=head))
        .exclude(pk=log.pk)
    )
    closed = [str(pk) for pk in incident.values_list("pk", flat=True)]
    incident.update(status=status, reviewed_by=moderator, reviewed_at=now, review_note=reason)
    details = {**details, "incident_logs_closed": closed}
    log.status = status
    log.reviewed_by = moderator
    log.reviewed_at = now
    log.review_note = reason
    log.save(update_fields=["status", "reviewed_by", "reviewed_at", "review_note"])
    return ModerationAction.objects.create(
        fraud_log=log,
        action=action,
        moderator=moderator,
        moderator_username=moderator.username,
        reason=reason,
        details=details,
    )


# ---------------------------------------------------------------------------------------------
# Batch scan (Celery)
# ---------------------------------------------------------------------------------------------
VELOCITY_OUTLIER = "velocity_outlier"
SHARED_IP_CLUSTER = "shared_ip_cluster"
MAD_TO_SIGMA = 1.4826  # scales the median absolute deviation to a standard deviation for normal data
CLUSTER_ACCOUNTS_LISTED = 50


@dataclass(frozen=True)
class ScanReport:
    players_scanned: int
    velocity_outliers: int
    shared_ip_clusters: int
    logs_written: int

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def _velocity_cutoff(points: list[int]) -> float | None:
    """Points above which a player is an outlier among today's players (None: too few to compare)."""
    if len(points) < settings.FRAUD_SCAN_MIN_PLAYERS:
        return None
    median = statistics.median(points)
    spread = MAD_TO_SIGMA * statistics.median(abs(p - median) for p in points)
    # A flat population (spread 0) would make every player above the median an outlier.
    spread = max(spread, 0.1 * median, 1.0)
    return median + settings.FRAUD_SCAN_MAD_FACTOR * spread


def scan_budgets() -> dict[str, int]:
    """Points per action type in the scan window at or above which the scan quarantines a player:
    the type's velocity budget for that window, what a keen human can do in it (fraud/README.md).

    (A fixed 100,000 points per hour over all types, as before, sat below what keen players with
    large increments score at the default action types — the full simulation quarantined two of
    them after ~150 levels — and added lap times in milliseconds to points.)
    """
    config = rule_config()
    window = settings.FRAUD_SCAN_WINDOW_SECONDS
    budgets = {}
    for name in config.action_types:
        budget = rules.budget_for(config, window=window, scope=name)
        if budget is not None:
            budgets[name] = budget[0]
    return budgets


def fraud_batch_scan(*, now: dt.datetime | None = None) -> ScanReport:
    """Look back ``FRAUD_SCAN_WINDOW_SECONDS`` for velocity outliers and accounts sharing an address.

    Writes one ``batch`` fraud log per finding, listing the actions in question so a confirmation can
    reverse them. A player already logged for the same finding within the window is skipped, so the
    job can run more often than its window.
    """
    now = now or timezone.now()
    since = now - dt.timedelta(seconds=settings.FRAUD_SCAN_WINDOW_SECONDS)
    minutes = settings.FRAUD_SCAN_WINDOW_SECONDS // 60
    population.population_refresh(since=since)
    players = selectors.recent_points_by_player(since=since)
    cutoff = _velocity_cutoff([p.points for p in players])
    fixed = settings.FRAUD_SCAN_POINTS_PER_WINDOW  # 0: each type's velocity budget (scan_budgets)
    over = {} if fixed > 0 else selectors.players_over_budget(since=since, budgets=scan_budgets())
    written = outliers = 0
    for player in players:
        absolute = player.points >= fixed if fixed > 0 else player.user_id in over
        relative = cutoff is not None and player.points > cutoff and player.points >= settings.FRAUD_SCAN_MIN_POINTS
        if not (absolute or relative):
            continue
        outliers += 1
        if selectors.batch_log_exists(user_id=player.user_id, event_type=VELOCITY_OUTLIER, since=since):
            continue
        if absolute and fixed > 0:
            reason = (
                f"{player.points} points from {player.actions} actions in {minutes} min "
                f"(at or above {settings.FRAUD_SCAN_POINTS_PER_WINDOW})"
            )
        elif absolute:
            action_type, points = over[player.user_id]
            reason = (
                f"{points} points of {action_type} in {minutes} min, at or above what a keen human can do "
                f"in that time ({scan_budgets()[action_type]}); {player.points} points from {player.actions} actions"
            )
        else:
            reason = (
                f"{player.points} points from {player.actions} actions in {minutes} min, far above the "
                f"{len(players)} active players (outlier cutoff {cutoff:.0f})"
            )
        # Beyond the absolute ceiling the scan also quarantines: hidden from the boards until reviewed.
        quarantined = absolute and player_quarantine(user_id=player.user_id)
        _batch_log_write(
            user_id=player.user_id,
            event_type=VELOCITY_OUTLIER,
            risk=0.9 if absolute else 0.6,
            reason=reason + (" — quarantined" if quarantined else ""),
            extra={"points": player.points, "actions": player.actions, "quarantined": quarantined},
            history_ids=selectors.recent_action_ids(user_id=player.user_id, since=since),
        )
        written += 1

    clusters = selectors.shared_ip_clusters(since=since, min_accounts=settings.FRAUD_SCAN_SHARED_IP_ACCOUNTS)
    for ip, user_ids in clusters.items():
        for user_id in user_ids:
            if selectors.batch_log_exists(user_id=user_id, event_type=SHARED_IP_CLUSTER, since=since):
                continue
            _batch_log_write(
                user_id=user_id,
                event_type=SHARED_IP_CLUSTER,
                risk=min(0.9, 0.1 * len(user_ids)),
                reason=f"{len(user_ids)} accounts scored from {ip} in {minutes} min",
                extra={"accounts": user_ids[:CLUSTER_ACCOUNTS_LISTED], "accounts_total": len(user_ids)},
                history_ids=selectors.recent_action_ids(user_id=user_id, since=since, ip=ip),
                ip=ip,
            )
            written += 1
    report = ScanReport(
        players_scanned=len(players), velocity_outliers=outliers, shared_ip_clusters=len(clusters), logs_written=written
    )
    logger.info("fraud batch scan: %s", report.as_dict())
    return report


def _batch_log_write(
    *,
    user_id: str,
    event_type: str,
    risk: float,
    reason: str,
    extra: dict[str, Any],
    history_ids: list[str],
    ip: str | None = None,
) -> FraudLog:
    return FraudLog.objects.create(
        user_id=user_id,
        event_type=event_type,
        decision=FraudLog.Decision.BATCH,
        risk_score=Decimal(f"{risk:.2f}"),
        rules=_rules_field([event_type]),
        metadata={
            "rules": [{"rule": event_type, "weight": 1.0, "contribution": risk, "weighted": risk, "reason": reason}],
            **extra,
            "history_ids": history_ids,
        },
        ip_address=ip,
    )
