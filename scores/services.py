"""Score writes: submitting an action, reversing it, and keeping the Redis index derived from PostgreSQL.

Lock order inside a score transaction is always: the player's ``users`` row first, then the
nonce/action-id unique entries (``used_nonces``, ``score_history``). Two submissions of one token
queue on the player row and the second fails the unique constraint (a replay).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
from dataclasses import asdict, dataclass
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from accounts.models import User
from fraud.hooks import rejected_tokens_counted
from scoreboard import db, metrics
from scoreboard.errors import ApiError, Conflict, Forbidden
from scoreboard.redis import REDIS_ERRORS, get_redis
from scores import action_tokens
from scores.action_tokens import ActionClaims, MintedActionToken
from scores.models import ScoreHistory, UsedNonce
from scores.ranking import GLOBAL, Board, IndexEntry, RankChange, redis_index
from scores.selectors import index_entries, index_entry, rank_in_db

logger = logging.getLogger(__name__)
security_log = logging.getLogger("scoreboard.security")

# The Redis replay pre-filter remembers a claimed nonce for the token window plus this margin.
NONCE_PREFILTER_MARGIN_SECONDS = 60
USER_AGENT_MAX_LENGTH = 1000


@dataclass(frozen=True)
class ScoreResult:
    user_id: str
    old_score: int
    new_score: int
    increment: int
    new_rank: int | None
    old_rank: int | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class RequestContext:
    ip_address: str | None = None
    user_agent: str = ""


@dataclass(frozen=True)
class _Applied:
    history_id: str
    old_score: int
    new_score: int
    old_reached_at: dt.datetime | None
    reached_at: dt.datetime
    version: int
    username: str


def action_token_mint(*, user_id: str, action_type: str, score_increment: int) -> MintedActionToken:
    """Mint a signed, single-use action token for a player that exists and is active."""
    if not User.objects.filter(pk=user_id, is_active=True).exists():
        raise ApiError("No active player with that user_id.", code="unknown_player", status_code=404)
    return action_tokens.mint(user_id=user_id, action_type=action_type, score_increment=score_increment)


# ---------------------------------------------------------------------------------------------
# Replay handling
# ---------------------------------------------------------------------------------------------
def _prefilter_keys(claims: ActionClaims) -> tuple[str, str]:
    return f"sb:nonce:{claims.nonce}", f"sb:action:{claims.action_id}"


def _prefilter_ttl() -> int:
    return (
        settings.ACTION_TOKEN_MAX_AGE_SECONDS
        + settings.ACTION_TOKEN_MAX_FUTURE_SECONDS
        + NONCE_PREFILTER_MARGIN_SECONDS
    )


def _prefilter_release(claims: ActionClaims) -> None:
    """Forget the pre-filter claim of an attempt that did not commit, so a retry is not refused."""
    client = get_redis()
    if client is None:
        return
    with contextlib.suppress(*REDIS_ERRORS):
        client.delete(*_prefilter_keys(claims))


def original_result(claims: ActionClaims) -> dict[str, Any] | None:
    """What the first use of this token (by nonce or action id) did, or None if nothing committed."""
    claimed = UsedNonce.objects.filter(Q(nonce=claims.nonce) | Q(action_id=claims.action_id)).first()
    if claimed is None:
        return None
    history = ScoreHistory.objects.filter(action_id=claimed.action_id).first()
    if history is None:
        return None
    return {
        "action_id": history.action_id,
        "user_id": str(history.user_id),
        "old_score": history.old_score,
        "new_score": history.new_score,
        "increment": history.score_increment,
        "applied_at": history.created_at.astimezone(dt.UTC).isoformat().replace("+00:00", "Z"),
    }


def _replay_conflict(claims: ActionClaims, original: dict[str, Any] | None) -> Conflict:
    security_log.warning("replayed action token action_id=%s user_id=%s", claims.action_id, claims.user_id)
    metrics.SCORE_REPLAYS.inc()
    return Conflict(
        "This action token was already used; the score was not changed again.",
        code="action_token_replayed",
        details=original,
    )


# ---------------------------------------------------------------------------------------------
# Applying a score change
# ---------------------------------------------------------------------------------------------
# PostgreSQL: the whole submission is ONE statement (one round trip, one commit in autocommit mode).
# Lock order: the player row (FOR UPDATE), then the nonce/action-id unique entries. Two uses of one
# token queue on the player row; the second then fails the unique constraint -> replay (409).
# A disabled player matches no row, so nothing is claimed or written and the statement returns no row.
_PG_SUBMIT = """
WITH player AS (
    SELECT id, current_score, score_reached_at FROM users
     WHERE id = %(user_id)s AND is_active
       FOR UPDATE
), claim AS (
    INSERT INTO used_nonces (nonce, action_id, user_id, created_at)
    SELECT %(nonce)s, %(action_id)s, id, %(now)s FROM player
    RETURNING user_id
), updated AS (
    UPDATE users AS u
       SET current_score = u.current_score + %(inc)s, score_reached_at = %(now)s,
           score_version = u.score_version + 1, updated_at = %(now)s
      FROM player, claim
     WHERE u.id = player.id
    RETURNING u.id, player.current_score AS old_score, player.score_reached_at AS old_reached_at,
              u.current_score AS new_score, u.score_version, u.username
), history AS (
    INSERT INTO score_history (id, user_id, kind, score_increment, old_score, new_score, action_type,
                               action_id, nonce, action_token_hash, action_timestamp, ip_address,
                               user_agent, metadata, created_at)
    SELECT gen_random_uuid(), id, %(kind)s, %(inc)s, old_score, new_score, %(action_type)s,
           %(action_id)s, %(nonce)s, %(token_hash)s, %(action_ts)s, %(ip)s::inet,
           %(user_agent)s, %(metadata)s::jsonb, %(now)s
      FROM updated
    RETURNING id
)
SELECT updated.old_score, updated.old_reached_at, updated.new_score, updated.score_version,
       updated.username, history.id
  FROM updated, history
"""


def _apply_postgres(
    *,
    user: User,
    claims: ActionClaims,
    token_hash: str,
    metadata: dict[str, Any],
    context: RequestContext,
    now: dt.datetime,
) -> _Applied | None:
    params: dict[str, Any] = {
        "user_id": user.pk,
        "nonce": claims.nonce,
        "action_id": claims.action_id,
        "now": now,
        "inc": claims.score_increment,
        "kind": ScoreHistory.Kind.ACTION.value,
        "action_type": claims.action_type,
        "token_hash": token_hash,
        "action_ts": claims.occurred_at,
        "ip": context.ip_address,
        "user_agent": context.user_agent[:USER_AGENT_MAX_LENGTH],
        "metadata": json.dumps(metadata),
    }

    if transaction.get_autocommit():
        row = db.fetchone(_PG_SUBMIT, params)  # a single statement is its own transaction
    else:
        with transaction.atomic():  # inside a caller's transaction: a savepoint keeps it usable on conflict
            row = db.fetchone(_PG_SUBMIT, params)
    if row is None:
        return None
    old_score, old_reached_at, new_score, version, username, history_id = row
    return _Applied(
        history_id=str(history_id),
        old_score=old_score,
        new_score=new_score,
        old_reached_at=old_reached_at,
        reached_at=now,
        version=version,
        username=username,
    )


def _apply_orm(
    *,
    user: User,
    claims: ActionClaims,
    token_hash: str,
    metadata: dict[str, Any],
    context: RequestContext,
    now: dt.datetime,
) -> _Applied | None:
    """The same transaction for other databases (SQLite in the embedded default)."""
    with transaction.atomic():
        player = User.objects.select_for_update().filter(pk=user.pk, is_active=True).first()
        if player is None:
            return None
        UsedNonce.objects.create(nonce=claims.nonce, action_id=claims.action_id, user_id=user.pk, created_at=now)
        old_score, old_reached_at = player.current_score, player.score_reached_at
        User.objects.filter(pk=user.pk).update(
            current_score=F("current_score") + claims.score_increment,
            score_reached_at=now,
            score_version=F("score_version") + 1,
            updated_at=now,
        )
        player.refresh_from_db(fields=["current_score", "score_version", "username"])
        history = ScoreHistory.objects.create(
            user_id=user.pk,
            kind=ScoreHistory.Kind.ACTION,
            score_increment=claims.score_increment,
            old_score=old_score,
            new_score=player.current_score,
            action_type=claims.action_type,
            action_id=claims.action_id,
            nonce=claims.nonce,
            action_token_hash=token_hash,
            action_timestamp=claims.occurred_at,
            ip_address=context.ip_address,
            user_agent=context.user_agent[:USER_AGENT_MAX_LENGTH],
            metadata=metadata,
        )
    return _Applied(
        history_id=str(history.pk),
        old_score=old_score,
        new_score=player.current_score,
        old_reached_at=old_reached_at,
        reached_at=now,
        version=player.score_version,
        username=player.username,
    )


def _apply(
    *, user: User, claims: ActionClaims, token_hash: str, metadata: dict[str, Any], context: RequestContext
) -> _Applied:
    """Claim the token, add the increment and write history — all or nothing.

    Raises IntegrityError when the nonce or action id was already claimed (a replay), 403 when the
    player is disabled.
    """
    apply = _apply_postgres if connection.vendor == "postgresql" else _apply_orm
    applied = apply(
        user=user, claims=claims, token_hash=token_hash, metadata=metadata, context=context, now=timezone.now()
    )
    if applied is None:
        raise Forbidden("This account is disabled.", code="account_disabled")
    return applied


def _index_after_commit(*, user_id: str, applied: _Applied, board: Board) -> RankChange:
    """Write the committed absolute score into Redis; when Redis is down, rank from PostgreSQL."""
    index = redis_index(board)
    entry = IndexEntry(
        user_id=user_id,
        username=applied.username,
        score=applied.new_score,
        version=applied.version,
        reached_at=applied.reached_at,
        last_updated=applied.reached_at,
    )
    if index is not None:
        try:
            return index.apply(entry)
        except REDIS_ERRORS:
            logger.warning("redis unavailable after commit; the drift check will repair the index")
    return RankChange(
        old_rank=rank_in_db(user_id=user_id, score=applied.old_score, reached_at=applied.old_reached_at),
        new_rank=rank_in_db(user_id=user_id, score=applied.new_score, reached_at=applied.reached_at),
        applied=True,
    )


@rejected_tokens_counted  # refused action tokens feed the fraud engine's token-abuse rule
def score_submit(
    *,
    user: User,
    action_token: str,
    metadata: dict[str, Any] | None = None,
    context: RequestContext | None = None,
    board: Board = GLOBAL,
) -> ScoreResult:
    """Verify an action token and apply its increment exactly once.

    Raises 401 (forged/stale token), 403 (another player's token, disabled account), 400 (action
    type/increment not allowed, metadata mismatch), 409 (replay, with the original result),
    429 (blocked by the fraud engine), 503 (database down). On success the change is committed in
    PostgreSQL before Redis is touched; the board is then re-indexed and the change broadcast.
    """
    from fraud import services as fraud_services
    from realtime import services as realtime_services

    context = context or RequestContext()
    metadata = metadata or {}
    claims = action_tokens.verify(action_token)
    if claims.user_id != str(user.pk):
        security_log.warning("action token for another player presented by user_id=%s", user.pk)
        raise Forbidden("This action token was issued to another player.", code="action_token_user_mismatch")
    if metadata.get("action_type") not in (None, claims.action_type):
        raise ApiError("metadata.action_type does not match the action token.", code="action_type_mismatch")

    # The replay pre-filter (Redis SET NX on nonce and action id) travels with the fraud engine's
    # window in one round trip: a token seen before is neither recorded nor assessed. It is only a
    # filter — PostgreSQL's unique constraints decide — and with Redis down nothing is "seen".
    assessment = fraud_services.score_attempt_assess(
        user=user, claims=claims, context=context, once_keys=_prefilter_keys(claims), once_ttl=_prefilter_ttl()
    )
    if assessment.repeat:
        original = original_result(claims)
        if original is not None:
            raise _replay_conflict(claims, original)
        # Claimed but never committed (an attempt in flight, or one that failed): assess it as usual.
        assessment = fraud_services.score_attempt_assess(user=user, claims=claims, context=context)

    try:
        applied = _apply(
            user=user,
            claims=claims,
            token_hash=action_tokens.token_hash(action_token),
            metadata=metadata,
            context=context,
        )
    except IntegrityError as exc:
        raise _replay_conflict(claims, original_result(claims)) from exc
    except BaseException:
        _prefilter_release(claims)
        raise

    metrics.SCORE_UPDATES.inc()
    change = _index_after_commit(user_id=str(user.pk), applied=applied, board=board)
    result = ScoreResult(
        user_id=str(user.pk),
        old_score=applied.old_score,
        new_score=applied.new_score,
        increment=claims.score_increment,
        new_rank=change.new_rank,
        old_rank=change.old_rank,
    )
    fraud_services.score_applied_record(
        user=user,
        claims=claims,
        context=context,
        assessment=assessment,
        history_id=applied.history_id,
    )
    realtime_services.score_changed(
        board=board,
        user_id=result.user_id,
        score=result.new_score,
        old_rank=result.old_rank,
        new_rank=result.new_rank,
    )
    return result


# ---------------------------------------------------------------------------------------------
# Corrections and the index
# ---------------------------------------------------------------------------------------------
def player_index_sync(*, user_id: str, board: Board = GLOBAL) -> None:
    """Re-derive one player's index entry from PostgreSQL (after a ban, reversal or Redis outage)."""
    index = redis_index(board)
    if index is None:
        return
    player = User.objects.filter(pk=user_id).first()
    if player is None:
        return
    if player.score_reached_at is None:
        return
    entry = index_entry(player)
    try:
        if player.is_active:
            index.apply(entry)
        else:
            index.remove(entry)
    except REDIS_ERRORS:
        logger.warning("redis unavailable; player %s left for the drift check", user_id)


def player_standing_changed(*, user_id: str, board: Board = GLOBAL) -> None:
    """Call after a player was banned or unbanned: bumps the version so the index takes the change."""
    User.objects.filter(pk=user_id).update(score_version=F("score_version") + 1)
    # Re-index, then let the live board drop (or restore) the player if the top 10 changed.
    transaction.on_commit(lambda: _after_correction(user_id=user_id, board=board))


def score_reverse(*, history: ScoreHistory, reason: str, board: Board = GLOBAL) -> ScoreHistory:
    """Compensate one applied action with a negative history row (history stays append-only).

    Idempotent: an action that was already reversed returns the existing reversal.
    """
    with transaction.atomic():
        existing = ScoreHistory.objects.filter(reverses=history).first()
        if existing is not None:
            return existing
        if history.kind != ScoreHistory.Kind.ACTION:
            raise ApiError("Only actions can be reversed.", code="not_reversible")
        now = timezone.now()
        player = User.objects.select_for_update().get(pk=history.user_id)
        old_score = player.current_score
        player.current_score = old_score - history.score_increment
        player.score_reached_at = now
        player.score_version += 1
        player.save(update_fields=["current_score", "score_reached_at", "score_version", "updated_at"])
        reversal = ScoreHistory.objects.create(
            user_id=player.pk,
            kind=ScoreHistory.Kind.REVERSAL,
            score_increment=-history.score_increment,
            old_score=old_score,
            new_score=player.current_score,
            action_type=history.action_type,
            action_token_hash=history.action_token_hash,
            reverses=history,
            metadata={"reason": reason},
        )
        transaction.on_commit(lambda: _after_correction(user_id=str(player.pk), board=board))
    return reversal


def _after_correction(*, user_id: str, board: Board) -> None:
    from realtime import services as realtime_services

    player_index_sync(user_id=user_id, board=board)
    realtime_services.board_corrected(board=board)


def leaderboard_rebuild(*, board: Board = GLOBAL) -> int:
    """Rebuild the Redis index of ``board`` from PostgreSQL; returns the number of players indexed.

    Changes committed while the rebuild runs are re-applied afterwards (version-guarded).
    """
    index = redis_index(board)
    if index is None:
        return 0
    started = timezone.now()
    count = index.replace_all(index_entries(board=board))
    for player in User.objects.filter(updated_at__gte=started):
        player_index_sync(user_id=str(player.pk), board=board)
    return count


@dataclass(frozen=True)
class DriftReport:
    checked: int
    missing: int
    stale: int
    extra: int
    repaired: bool


def leaderboard_drift_check(*, board: Board = GLOBAL, repair: bool = True) -> DriftReport:
    """Compare the index with PostgreSQL player by player (by version) and repair what differs."""
    index = redis_index(board)
    if index is None:
        return DriftReport(checked=0, missing=0, stale=0, extra=0, repaired=False)
    indexed = index.versions()
    expected = {e.user_id: e for e in index_entries(board=board)}
    missing = [uid for uid in expected if uid not in indexed]
    stale = [uid for uid, e in expected.items() if uid in indexed and indexed[uid] != e.version]
    extra = [uid for uid in indexed if uid not in expected]
    drifted = bool(missing or stale or extra)
    if drifted:
        logger.warning(
            "leaderboard drift on %s: missing=%d stale=%d extra=%d", board.name, len(missing), len(stale), len(extra)
        )
    if drifted and repair:
        leaderboard_rebuild(board=board)
    return DriftReport(
        checked=len(expected), missing=len(missing), stale=len(stale), extra=len(extra), repaired=drifted and repair
    )


def used_nonces_purge(*, older_than: dt.datetime) -> int:
    """Delete claimed nonces whose tokens can no longer verify (their window has passed)."""
    deleted, _ = UsedNonce.objects.filter(created_at__lt=older_than).delete()
    return deleted
