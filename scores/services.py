"""Score writes: submitting an action to every board it feeds, reversing it, and keeping the Redis
index derived from PostgreSQL.

Lock order inside a score transaction is always: the player's ``users`` row first, then the
nonce/action-id unique entries (``used_nonces``, ``score_history``), then the player's
``board_entries`` rows. Two submissions of one token queue on the player row and the second fails
the unique constraint (a replay); two submissions of one player queue on the player row, so the
entries of all boards change in the order the submissions commit.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import F, Q
from django.utils import timezone
from rest_framework.exceptions import APIException

from accounts import cards
from accounts.authentication import external_session_valid, player_refusal
from accounts.models import User
from accounts.selectors import user_by_id
from scoreboard import db, metrics
from scoreboard.errors import ApiError, Conflict, Forbidden, ServiceUnavailable
from scoreboard.progress import Bar, counted
from scoreboard.redis import REDIS_ERRORS, gate_key, get_redis, scripts_run
from scores import action_tokens, events, registry, selectors
from scores.action_tokens import ActionClaims, MintedActionToken
from scores.boards import (
    GLOBAL_ID,
    OP_INCR,
    SORT_DESC,
    TIE_COMPETITION,
    TIE_DENSE,
    TIE_FIRST_REACHED,
    BoardSpec,
    Period,
)
from scores.models import BoardEntry, BoardPeriod, ScoreHistory, UsedNonce
from scores.ranking import IndexEntry, RankChange, RedisIndex, reached_from_us, redis_index

logger = logging.getLogger(__name__)
security_log = logging.getLogger("scoreboard.security")

# The Redis replay pre-filter remembers a claimed nonce for the token window plus this margin.
NONCE_PREFILTER_MARGIN_SECONDS = 60
USER_AGENT_MAX_LENGTH = 1000
REJECTED_TOKEN_CODES = frozenset(
    {
        "invalid_action_token",
        "action_token_expired",
        "action_token_from_future",
        "action_token_user_mismatch",
        "action_token_replayed",
    }
)


@dataclass(frozen=True)
class BoardResult:
    """What one submission did on one board."""

    board: str
    period: str
    old_score: int | None
    new_score: int
    old_rank: int | None
    new_rank: int | None

    def as_dict(self) -> dict[str, Any]:
        # Spelled out: dataclasses.asdict deep-copies field by field (1.5% of an update's CPU).
        return {
            "board": self.board,
            "period": self.period,
            "old_score": self.old_score,
            "new_score": self.new_score,
            "old_rank": self.old_rank,
            "new_rank": self.new_rank,
        }


@dataclass(frozen=True)
class ScoreResult:
    user_id: str
    old_score: int
    new_score: int
    increment: int
    new_rank: int | None
    old_rank: int | None
    boards: list[BoardResult] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "user_id": self.user_id,
            "old_score": self.old_score,
            "new_score": self.new_score,
            "increment": self.increment,
            "new_rank": self.new_rank,
            "old_rank": self.old_rank,
            "boards": [b.as_dict() for b in self.boards],
        }


@dataclass(frozen=True)
class RequestContext:
    ip_address: str | None = None
    user_agent: str = ""
    # The request's rate-limit hits not counted yet (``scoreboard.ratelimit.PendingLimits``): the
    # fraud engine's pre-write script counts them; whatever is left is counted before any write.
    limits: Any = None
    # The player's card (``accounts.cards.CardCheck``) when authentication did not look the player up:
    # the pre-write script checks it; without a usable card the lookup runs there (``_vouch``).
    card: Any = None
    # The token's session (``accounts.authentication.SessionCheck``): the write checks it on the row.
    session: Any = None


@dataclass(frozen=True)
class BoardWrite:
    """One board the submission feeds, in the period the clock is in."""

    spec: BoardSpec
    period: Period


@dataclass(frozen=True)
class _EntryWritten:
    board_id: str
    period_key: str
    old_score: int | None
    old_reached_at: dt.datetime | None
    new_score: int
    reached_at: dt.datetime
    version: int


@dataclass(frozen=True)
class _Applied:
    history_id: str
    old_score: int
    new_score: int
    username: str
    entries: list[_EntryWritten]
    # The player's row as the write left it (it was locked): hidden or not, and its score version.
    quarantined: bool = False
    score_version: int = 0


def action_token_mint(*, user_id: str, action_type: str, score_increment: int) -> MintedActionToken:
    """Mint a signed, single-use action token for a player that exists and is active."""
    if not User.objects.filter(pk=user_id, is_active=True).exists():
        raise ApiError("No active player with that user_id.", code="unknown_player", status_code=404)
    return action_tokens.mint(user_id=user_id, action_type=action_type, score_increment=score_increment)


# ---------------------------------------------------------------------------------------------
# Replay handling
# ---------------------------------------------------------------------------------------------
def _prefilter_keys(claims: ActionClaims) -> tuple[str, str]:
    # Under the gate tag: checked in the fraud window's script, one slot on a Redis Cluster.
    return gate_key("nonce", claims.nonce), gate_key("action", claims.action_id)


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
        "boards": [{"board": b["board"], "period": b["period"]} for b in history.boards or []],
        "applied_at": history.created_at.astimezone(dt.UTC).isoformat().replace("+00:00", "Z"),
    }


# The unique entries that make an action token single-use (a violation of one of them is a replay).
REPLAY_CONSTRAINTS = frozenset(
    {"used_nonces_pkey", "uniq_used_nonces_action_id", "uniq_score_history_action_id", "score_history_pkey"}
)


def _is_replay(exc: IntegrityError) -> bool:
    cause = exc.__cause__
    diag = getattr(cause, "diag", None)
    if diag is None:  # SQLite says only "UNIQUE constraint failed: used_nonces.nonce"
        text = str(exc)
        return "UNIQUE" in text and ("used_nonces" in text or "score_history.action_id" in text)
    return getattr(diag, "constraint_name", None) in REPLAY_CONSTRAINTS


def _is_missing_board(exc: IntegrityError) -> bool:
    diag = getattr(exc.__cause__, "diag", None)
    return diag is not None and diag.sqlstate == "23503" and diag.table_name in ("board_entries", "board_periods")


def _replay_conflict(claims: ActionClaims, original: dict[str, Any] | None) -> Conflict:
    security_log.warning("replayed action token action_id=%s user_id=%s", claims.action_id, claims.user_id)
    metrics.SCORE_REPLAYS.inc()
    return Conflict(
        "This action token was already used; the score was not changed again.",
        code="action_token_replayed",
        details=original,
    )


# ---------------------------------------------------------------------------------------------
# Which boards and periods a submission writes
# ---------------------------------------------------------------------------------------------
class _KnownPeriods:
    """(board, period) pairs this process already made sure have a ``board_periods`` row."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: set[tuple[str, str]] = set()

    def missing(self, writes: Iterable[BoardWrite]) -> list[BoardWrite]:
        with self._lock:
            return [w for w in writes if (w.spec.id, w.period.key) not in self._seen]

    def add(self, board_id: str, key: str) -> None:
        with self._lock:
            self._seen.add((board_id, key))

    def clear(self) -> None:
        with self._lock:
            self._seen.clear()


_known_periods = _KnownPeriods()


def known_periods_clear() -> None:
    """Forget which periods exist (tests that flush the database; a period pruned by the beat task)."""
    _known_periods.clear()


def board_writes(*, action_type: str, at: dt.datetime) -> list[BoardWrite]:
    """Every board this action feeds now, each in its current period, ``global`` first."""
    return [BoardWrite(spec, spec.period_at(at)) for spec in registry.boards_fed(action_type=action_type, at=at)]


def _periods_ensure(writes: Sequence[BoardWrite]) -> None:
    """Make sure each written period has its ``board_periods`` row (once per process and period).

    A period created here is new and empty, so its Redis index is complete as it stands: it is
    marked built. An index that lost its mark (Redis flushed or restarted empty) is rebuilt instead.
    """
    for write in _known_periods.missing(writes):
        try:
            created = _period_row_ensure(write)
        except IntegrityError:
            # The board row is gone behind this process's copy of the boards table (a flushed
            # test database): reload the table (it re-creates "global") and try once more.
            registry.boards_cache_clear()
            registry.board_get(GLOBAL_ID)
            created = _period_row_ensure(write)
        if created:
            index = redis_index(write.spec, write.period.key)
            if index is not None:
                with contextlib.suppress(*REDIS_ERRORS):
                    index.mark_built()
        _known_periods.add(write.spec.id, write.period.key)


def _period_row_ensure(write: BoardWrite) -> bool:
    with transaction.atomic():
        _, created = BoardPeriod.objects.get_or_create(
            board_id=write.spec.id,
            key=write.period.key,
            defaults={"starts_at": write.period.starts_at, "ends_at": write.period.ends_at},
        )
    return created


# ---------------------------------------------------------------------------------------------
# Applying a score change
# ---------------------------------------------------------------------------------------------
# PostgreSQL: the whole submission is ONE statement (one round trip, one commit in autocommit mode)
# for every board it feeds. Lock order: the player row (FOR UPDATE), then the nonce/action-id unique
# entries, then the player's board entries. A disabled player, or a token of a revoked session (its
# epoch is not the row's; an external issuer's token issued at or before sessions_revoked_at),
# matches no row, so nothing is claimed or written and the statement returns no row: authentication
# may have vouched for the player from their card in Redis (accounts.cards), the row decides.
#
# Each board entry is an upsert whose ON CONFLICT branch works on the latest committed row (also
# when this statement waited for the player lock), computes the new score with the board's
# operator, and keeps the values it replaced in prev_score/prev_reached_at, so RETURNING gives the
# old and the new score of every board at once. A score that did not change (a "best" board that
# was not beaten) keeps its time reached and its version.
SUBMIT_SQL = """
WITH player AS (
    SELECT id, current_score, username FROM users
     WHERE id = %(user_id)s AND is_active
       AND (%(epoch)s::bigint IS NULL OR token_epoch = %(epoch)s::bigint)
       AND (NOT %(external)s::boolean OR sessions_revoked_at IS NULL
            OR floor(extract(epoch FROM sessions_revoked_at)) < %(iat)s::double precision)
       FOR UPDATE
), claim AS (
    INSERT INTO used_nonces (nonce, action_id, user_id, created_at)
    SELECT %(nonce)s, %(action_id)s, id, %(now)s FROM player
    RETURNING user_id
), spec AS (
    SELECT * FROM unnest(%(b_ids)s::text[], %(b_periods)s::text[], %(b_ops)s::text[], %(b_high)s::boolean[])
        AS s(board_id, period_key, op, high_wins)
), entries AS (
    INSERT INTO board_entries AS e (board_id, period_key, user_id, score, sort_value, reached_at, version,
                                    updated_at)
    SELECT s.board_id, s.period_key, claim.user_id, %(value)s,
           CASE WHEN s.high_wins THEN -%(value)s ELSE %(value)s END, %(now)s, 1, %(now)s
      FROM spec s, claim
    ON CONFLICT (board_id, period_key, user_id) DO UPDATE SET
        (prev_score, prev_reached_at, score, sort_value, reached_at, version, updated_at) = (
            SELECT e.score, e.reached_at, n.score,
                   CASE WHEN s.high_wins THEN -n.score ELSE n.score END,
                   CASE WHEN n.score = e.score THEN e.reached_at ELSE excluded.reached_at END,
                   e.version + CASE WHEN n.score = e.score THEN 0 ELSE 1 END,
                   excluded.updated_at
              FROM spec s,
                   LATERAL (SELECT CASE
                       WHEN s.op = 'incr' THEN e.score + excluded.score
                       WHEN s.op = 'set' THEN excluded.score
                       WHEN s.high_wins THEN GREATEST(e.score, excluded.score)
                       ELSE LEAST(e.score, excluded.score) END AS score) n
             WHERE s.board_id = excluded.board_id AND s.period_key = excluded.period_key)
    RETURNING e.board_id, e.period_key, e.prev_score, e.prev_reached_at, e.score, e.reached_at, e.version,
              (e.xmax = 0) AS inserted
), updated AS (
    UPDATE users AS u
       SET current_score = u.current_score + %(global_inc)s,
           score_reached_at = CASE WHEN %(global_inc)s <> 0 THEN %(now)s ELSE u.score_reached_at END,
           score_version = u.score_version + 1, updated_at = %(now)s
      FROM player, claim
     WHERE u.id = player.id
    RETURNING u.id, player.current_score AS old_score, u.current_score AS new_score, u.username,
              u.score_version, u.is_quarantined
), history AS (
    INSERT INTO score_history (id, user_id, kind, score_increment, old_score, new_score, action_type,
                               action_id, nonce, action_token_hash, action_timestamp, ip_address,
                               user_agent, metadata, boards, created_at)
    SELECT gen_random_uuid(), id, %(kind)s, %(value)s, old_score, new_score, %(action_type)s,
           %(action_id)s, %(nonce)s, %(token_hash)s, %(action_ts)s, %(ip)s::inet,
           %(user_agent)s, %(metadata)s::jsonb,
           COALESCE((SELECT jsonb_agg(jsonb_build_object(
                        'board', board_id, 'period', period_key,
                        'old', CASE WHEN inserted THEN NULL ELSE prev_score END, 'new', score))
                       FROM entries), '[]'::jsonb),
           %(now)s
      FROM updated
    RETURNING id
)
SELECT updated.old_score, updated.new_score, updated.username, history.id,
       entries.board_id, entries.period_key, entries.prev_score,
       (extract(epoch FROM entries.prev_reached_at) * 1000000)::bigint, entries.score,
       (extract(epoch FROM entries.reached_at) * 1000000)::bigint, entries.version, entries.inserted,
       updated.score_version, updated.is_quarantined
  FROM updated, history, entries
"""
# The times reached come back as microseconds since the epoch (exact: extract() is numeric): a bigint
# loads in C, a timestamptz through Django's time-zone loader in Python (3.5% of an update's CPU).


def _array_literal(values: Iterable[str]) -> str:
    """A PostgreSQL array literal of text elements, each quoted (``{"a","b\\"c"}``)."""
    return "{" + ",".join('"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values) + "}"


def board_arrays(writes: Sequence[BoardWrite]) -> dict[str, str]:
    """The boards of a write as the statement's four array parameters, in PostgreSQL's text form.

    Strings, cast by the statement (``::text[]``, ``::boolean[]``): psycopg dumps a str in C, while a
    Python list goes through its array dumper (element types looked up, the dumper upgraded, every
    element dumped): 3.4% of a three-board update's instructions (callgrind, 5,001,478 -> 4,829,271).
    """
    return {
        "b_ids": _array_literal(w.spec.id for w in writes),
        "b_periods": _array_literal(w.period.key for w in writes),
        "b_ops": _array_literal(w.spec.operator for w in writes),
        "b_high": "{" + ",".join("t" if w.spec.sort == SORT_DESC else "f" for w in writes) + "}",
    }


def _submit_params(
    *,
    user: User,
    claims: ActionClaims,
    writes: Sequence[BoardWrite],
    token_hash: str,
    metadata: dict[str, Any],
    context: RequestContext,
    now: dt.datetime,
) -> dict[str, Any]:
    feeds_global = any(w.spec.id == GLOBAL_ID for w in writes)
    session = context.session
    return {
        "user_id": user.pk,
        "epoch": None if session is None or session.external else session.epoch,
        "external": session is not None and session.external,
        "iat": None if session is None else session.issued_at,
        "nonce": claims.nonce,
        "action_id": claims.action_id,
        "now": now,
        "value": claims.score_increment,
        "global_inc": claims.score_increment if feeds_global else 0,
        **board_arrays(writes),
        "kind": ScoreHistory.Kind.ACTION.value,
        "action_type": claims.action_type,
        "token_hash": token_hash,
        "action_ts": claims.occurred_at,
        "ip": context.ip_address,
        "user_agent": context.user_agent[:USER_AGENT_MAX_LENGTH],
        "metadata": orjson.dumps(metadata).decode(),  # cast to jsonb by the statement: its spacing is not kept
    }


def _apply_postgres(*, params: dict[str, Any], writes: Sequence[BoardWrite]) -> _Applied | None:
    if transaction.get_autocommit():
        rows = db.fetchall(SUBMIT_SQL, params)  # a single statement is its own transaction
    else:
        with transaction.atomic():  # inside a caller's transaction: a savepoint keeps it usable on conflict
            rows = db.fetchall(SUBMIT_SQL, params)
    if not rows:
        return None
    old_score, new_score, username, history_id = rows[0][:4]
    by_board = {
        r[4]: _EntryWritten(
            board_id=r[4],
            period_key=r[5],
            old_score=None if r[11] else r[6],
            old_reached_at=None if r[11] or r[7] is None else reached_from_us(r[7]),
            new_score=r[8],
            reached_at=reached_from_us(r[9]),
            version=r[10],
        )
        for r in rows
    }
    return _Applied(
        history_id=str(history_id),
        old_score=old_score,
        new_score=new_score,
        username=username,
        entries=[by_board[w.spec.id] for w in writes],
        score_version=rows[0][12],
        quarantined=bool(rows[0][13]),
    )


def _apply_orm(*, params: dict[str, Any], writes: Sequence[BoardWrite]) -> _Applied | None:
    """The same transaction for other databases (SQLite in the embedded default)."""
    now: dt.datetime = params["now"]
    value: int = params["value"]
    with transaction.atomic():
        player = User.objects.select_for_update().filter(pk=params["user_id"], is_active=True).first()
        if player is None or not _session_valid(player, params):
            return None
        UsedNonce.objects.create(
            nonce=params["nonce"], action_id=params["action_id"], user_id=player.pk, created_at=now
        )
        written: list[_EntryWritten] = []
        for write in writes:
            entry = (
                BoardEntry.objects.select_for_update()
                .filter(board_id=write.spec.id, period_key=write.period.key, user_id=player.pk)
                .first()
            )
            if entry is None:
                entry = BoardEntry.objects.create(
                    board_id=write.spec.id,
                    period_key=write.period.key,
                    user_id=player.pk,
                    score=value,
                    sort_value=write.spec.sort_value(value),
                    reached_at=now,
                    version=1,
                    updated_at=now,
                )
                written.append(_EntryWritten(write.spec.id, write.period.key, None, None, value, now, 1))
                continue
            old_score, old_reached = entry.score, entry.reached_at
            new_score = write.spec.combine(old_score, value)
            changed = new_score != old_score
            entry.prev_score, entry.prev_reached_at = old_score, old_reached
            entry.score, entry.sort_value = new_score, write.spec.sort_value(new_score)
            entry.reached_at = now if changed else old_reached
            entry.version += 1 if changed else 0
            entry.updated_at = now
            entry.save()
            written.append(
                _EntryWritten(
                    write.spec.id, write.period.key, old_score, old_reached, new_score, entry.reached_at, entry.version
                )
            )
        old_global = player.current_score
        global_inc = params["global_inc"]
        User.objects.filter(pk=player.pk).update(
            current_score=F("current_score") + global_inc,
            score_reached_at=now if global_inc else F("score_reached_at"),
            score_version=F("score_version") + 1,
            updated_at=now,
        )
        history = ScoreHistory.objects.create(
            user_id=player.pk,
            kind=ScoreHistory.Kind.ACTION,
            score_increment=value,
            old_score=old_global,
            new_score=old_global + global_inc,
            action_type=params["action_type"],
            action_id=params["action_id"],
            nonce=params["nonce"],
            action_token_hash=params["token_hash"],
            action_timestamp=params["action_ts"],
            ip_address=params["ip"],
            user_agent=params["user_agent"],
            metadata=json.loads(params["metadata"]),
            boards=[
                {"board": w.board_id, "period": w.period_key, "old": w.old_score, "new": w.new_score} for w in written
            ],
        )
    return _Applied(
        history_id=str(history.pk),
        old_score=old_global,
        new_score=old_global + global_inc,
        username=player.username,
        entries=written,
        score_version=player.score_version + 1,
        quarantined=player.is_quarantined,
    )


def _session_valid(player: User, params: dict[str, Any]) -> bool:
    """SUBMIT_SQL's session condition on the locked row (the ORM path)."""
    if params["external"]:
        return external_session_valid(params["iat"], player)
    return params["epoch"] is None or params["epoch"] == player.token_epoch


def _apply(
    *,
    user: User,
    claims: ActionClaims,
    writes: Sequence[BoardWrite],
    token_hash: str,
    metadata: dict[str, Any],
    context: RequestContext,
    now: dt.datetime,
) -> _Applied:
    """Claim the token, apply the value to every board and write history — all or nothing.

    Raises IntegrityError when the nonce or action id was already claimed (a replay), 403 when the
    player is disabled.
    """
    params = _submit_params(
        user=user, claims=claims, writes=writes, token_hash=token_hash, metadata=metadata, context=context, now=now
    )
    apply = _apply_postgres if connection.vendor == "postgresql" else _apply_orm
    applied = apply(params=params, writes=writes)
    if applied is None:
        raise _write_refusal(user=user, context=context)
    return applied


def _write_refusal(*, user: User, context: RequestContext) -> Exception:
    """The write matched no row: the player is gone, disabled, or the session was revoked (maybe
    after their card vouched for them). The card goes; the lookup says which, as authentication
    would (401 / 403)."""
    cards.cards_drop([user.pk])
    session = context.session
    if session is not None:
        refusal = player_refusal(
            user_by_id(user_id=str(user.pk)),
            epoch=session.epoch,
            issued_at=session.issued_at,
            external=session.external,
        )
        if refusal is not None:
            return refusal
    return Forbidden("This account is disabled.", code="account_disabled")


def _index_entry(*, user_id: str, username: str, written: _EntryWritten, hidden: bool) -> IndexEntry:
    return IndexEntry(
        user_id=user_id,
        username=username,
        score=written.new_score,
        version=written.version,
        reached_at=written.reached_at,
        last_updated=written.reached_at,
        hidden=hidden,
    )


def _index_after_commit(
    *, user_id: str, applied: _Applied, writes: Sequence[BoardWrite], hidden: bool
) -> list[RankChange]:
    """Write the committed absolute scores of every board into Redis in one round trip.

    When Redis is down, ranks come from PostgreSQL and the index is repaired later. An index that
    has lost its "built" mark (Redis restarted empty) is rebuilt from PostgreSQL at once.
    """
    client = get_redis()
    indexes: list[RedisIndex] = []
    live = events.bus.live_script
    if client is not None:
        try:
            # One script per board (each touches its board's slot only: Redis Cluster), all boards
            # in one pipeline: one round trip for every board's index, ranks and live publish.
            calls = []
            for write in writes:
                index = redis_index(write.spec, write.period.key)
                assert index is not None
                indexes.append(index)
            for write, index, written in zip(writes, indexes, applied.entries, strict=True):
                then = (
                    None
                    if live is None
                    else (
                        live.lua,
                        live.keys(write.spec),
                        live.args(
                            board=write.spec,
                            period=write.period.key,
                            user_id=user_id,
                            score=written.new_score,
                            hidden=hidden,
                        ),
                    )
                )
                calls.append(
                    index.apply_call(
                        _index_entry(user_id=user_id, username=applied.username, written=written, hidden=hidden),
                        then=then,
                    )
                )
            # The player's card (accounts.cards) takes the score just written, in the same round trip.
            calls.append(
                cards.refresh_call(
                    client,
                    user_id=user_id,
                    score=applied.new_score,
                    version=applied.score_version,
                    quarantined=applied.quarantined,
                )
            )
            changes = [RedisIndex.change_from(raw) for raw in scripts_run(client, calls)[:-1]]
        except REDIS_ERRORS:
            logger.warning("redis unavailable after commit; the drift check will repair the index")
        else:
            for write, change in zip(writes, changes, strict=True):
                if not change.built:
                    index_rebuild_soon(spec=write.spec, period_key=write.period.key)
            return changes
    return [
        RankChange(
            # Bounded counts while Redis is down (DEGRADED_RANK_LIMIT): exact near the top, None
            # beyond, never a scan of the board on every update.
            old_rank=selectors.rank_in_db(
                spec=w.spec,
                period_key=w.period.key,
                user_id=user_id,
                score=e.old_score,
                reached_at=e.old_reached_at,
                exclude_self=True,
                at_most=settings.DEGRADED_RANK_LIMIT,
            ),
            new_rank=selectors.rank_in_db(
                spec=w.spec,
                period_key=w.period.key,
                user_id=user_id,
                score=e.new_score,
                reached_at=e.reached_at,
                at_most=settings.DEGRADED_RANK_LIMIT,
            ),
            applied=True,
        )
        for w, e in zip(writes, applied.entries, strict=True)
    ]


def score_submit(
    *,
    user: User,
    action_token: str,
    metadata: dict[str, Any] | None = None,
    context: RequestContext | None = None,
) -> ScoreResult:
    """Verify an action token and apply it exactly once to every board it feeds.

    Raises 401 (forged/stale token), 403 (another player's token, disabled account), 400 (action
    type/increment not allowed, metadata mismatch), 409 (replay, with the original result),
    429 (blocked by the fraud engine), 503 (database down). On success the change is committed in
    PostgreSQL (all boards or none) before Redis is touched; then every board is re-indexed and
    one ``ScoreApplied`` event per board is emitted (``scores.events``).
    """
    context = context or RequestContext()
    try:
        return _score_submit(user=user, action_token=action_token, metadata=metadata or {}, context=context)
    except ApiError as exc:
        vouch(context)  # not vouched for yet: authentication's 401 / 403 come first (DESIGN's order)
        _limits_count(context)  # not counted yet (refused before the pre-write call): 429 when over
        if exc.code in REJECTED_TOKEN_CODES:  # refused tokens feed the fraud engine's token-abuse rule
            events.emit_token_rejected(user=user, context=context, code=exc.code)
        raise


def vouch(context: RequestContext) -> None:
    """The lookup, for a player no card vouched for yet (``accounts.cards``): 401 / 403 as
    authentication answers them, and then the player's attempt counts only against the per-IP
    limit, as a request refused by authentication always did."""
    card = context.card
    if card is None or not card.pending:
        return
    try:
        card.confirm()
    except APIException:
        if context.limits is not None:
            context.limits.player_drop()
        raise


def _limits_count(context: RequestContext) -> None:
    """Count the request's rate-limit hits now if the pre-write script did not (raises 429 when over)."""
    if context.limits is not None:
        context.limits.flush()


def _score_submit(*, user: User, action_token: str, metadata: dict[str, Any], context: RequestContext) -> ScoreResult:
    claims = action_tokens.verify(action_token)
    if claims.user_id != str(user.pk):
        security_log.warning("action token for another player presented by user_id=%s", user.pk)
        raise Forbidden("This action token was issued to another player.", code="action_token_user_mismatch")
    if metadata.get("action_type") not in (None, claims.action_type):
        raise ApiError("metadata.action_type does not match the action token.", code="action_type_mismatch")

    # The replay pre-filter (Redis SET NX on nonce and action id) travels with the fraud engine's
    # window in one round trip: a token seen before is neither recorded nor assessed. It is only a
    # filter — PostgreSQL's unique constraints decide — and with Redis down nothing is "seen".
    assess = events.bus.assessor
    try:
        assessment = assess(
            user=user, claims=claims, context=context, once_keys=_prefilter_keys(claims), once_ttl=_prefilter_ttl()
        )
    except cards.CardMiss:  # nothing was done: the lookup, then the same call fills the card first
        vouch(context)
        assessment = assess(
            user=user, claims=claims, context=context, once_keys=_prefilter_keys(claims), once_ttl=_prefilter_ttl()
        )
    vouch(context)  # no pre-write script read the card (no fraud engine, Redis unavailable): the lookup
    if assessment.repeat:
        original = original_result(claims)
        if original is not None:
            raise _replay_conflict(claims, original)
        # Claimed but never committed (an attempt in flight, or one that failed): assess it as usual.
        assessment = assess(user=user, claims=claims, context=context, once_keys=(), once_ttl=0)
    _limits_count(context)  # an assessor that did not count them (none installed, Redis down)

    token_hash = action_tokens.token_hash(action_token)
    for attempt in (1, 2):
        now = timezone.now()
        writes = board_writes(action_type=claims.action_type, at=now)
        try:
            _periods_ensure(writes)
            applied = _apply(
                user=user,
                claims=claims,
                writes=writes,
                token_hash=token_hash,
                metadata=metadata,
                context=context,
                now=now,
            )
            break
        except IntegrityError as exc:
            if _is_replay(exc):
                raise _replay_conflict(claims, original_result(claims)) from exc
            if attempt == 1 and _is_missing_board(exc):
                # A board was deleted behind this process's copy of the boards table: reload it
                # (which re-creates "global" if needed) and apply to the boards that exist now.
                registry.boards_cache_clear()
                registry.board_get(GLOBAL_ID)
                known_periods_clear()
                continue
            _prefilter_release(claims)
            logger.error("score update of %s refused by the database: %s", claims.action_id, exc)
            raise ServiceUnavailable(
                "The score could not be applied right now; nothing was changed. Retry shortly.",
                code="score_not_applied",
            ) from exc
        except BaseException:
            _prefilter_release(claims)
            raise

    metrics.SCORE_UPDATES.inc()
    user_id = str(user.pk)
    hidden = applied.quarantined  # the row the write locked, not what was read before it
    changes = _index_after_commit(user_id=user_id, applied=applied, writes=writes, hidden=hidden)
    boards = [
        BoardResult(
            board=w.spec.id,
            period=w.period.key,
            old_score=e.old_score,
            new_score=e.new_score,
            old_rank=c.old_rank,
            new_rank=c.new_rank,
        )
        for w, e, c in zip(writes, applied.entries, changes, strict=True)
    ]
    on_global = next((b for b in boards if b.board == GLOBAL_ID), None)
    result = ScoreResult(
        user_id=user_id,
        old_score=applied.old_score,
        new_score=applied.new_score,
        increment=claims.score_increment,
        new_rank=on_global.new_rank if on_global else None,
        old_rank=on_global.old_rank if on_global else None,
        boards=boards,
    )
    events.emit_submission_applied(
        events.SubmissionApplied(
            user=user, claims=claims, context=context, assessment=assessment, history_id=applied.history_id
        )
    )
    for write, board, change in zip(writes, boards, changes, strict=True):
        events.emit_score_applied(
            events.ScoreApplied(
                board=write.spec,
                period=board.period,
                user_id=user_id,
                score=board.new_score,
                old_rank=board.old_rank,
                new_rank=board.new_rank,
                hidden=hidden,
                published=change.then is not None and change.then >= 0,
            )
        )
    return result


# ---------------------------------------------------------------------------------------------
# Corrections and the index
# ---------------------------------------------------------------------------------------------
def _live_entries_of(user_id: str) -> Iterator[tuple[BoardSpec, BoardEntry]]:
    """The player's entries in every period that still has a live index (not dropped after closing)."""
    entries = list(BoardEntry.objects.filter(user_id=user_id).select_related("user"))
    dropped = set(
        BoardPeriod.objects.filter(
            board_id__in={e.board_id for e in entries}, index_dropped_at__isnull=False
        ).values_list("board_id", "key")
    )
    for entry in entries:
        spec = registry.board_get(entry.board_id)
        if spec is not None and (entry.board_id, entry.period_key) not in dropped:
            yield spec, entry


def player_index_sync(*, user_id: str) -> None:
    """Re-derive one player's index entries on every live board from PostgreSQL (after a ban,
    quarantine, reversal or Redis outage)."""
    if get_redis() is None:
        return
    for spec, entry in _live_entries_of(user_id):
        _entry_index_sync(spec=spec, entry=entry)


def _entry_index_sync(*, spec: BoardSpec, entry: BoardEntry) -> None:
    index = redis_index(spec, entry.period_key)
    if index is None:
        return
    indexed = selectors.index_entry(entry)
    try:
        if entry.user.is_active:
            index.apply(indexed)
        else:
            index.remove(indexed)
    except REDIS_ERRORS:
        logger.warning("redis unavailable; player %s left for the drift check", entry.user_id)


def player_standing_changed(*, user_id: str) -> None:
    """Call after a player was banned, unbanned, quarantined or released.

    Bumps the version of the player's entries so every index takes the change, then (after the
    commit) re-indexes them and lets the live boards drop or restore the player.
    """
    User.objects.filter(pk=user_id).update(score_version=F("score_version") + 1)
    BoardEntry.objects.filter(user_id=user_id).update(version=F("version") + 1)

    def after() -> None:
        indexed = get_redis() is not None
        for spec, entry in _live_entries_of(user_id):
            if indexed:
                _entry_index_sync(spec=spec, entry=entry)
            events.emit_board_corrected(events.BoardCorrected(board=spec, period=entry.period_key))

    transaction.on_commit(after)


def _history_actions_on(entry: BoardEntry) -> list[ScoreHistory]:
    """The player's applied, unreversed actions that fed this board's period, oldest first."""
    reversed_ids = ScoreHistory.objects.filter(user_id=entry.user_id, reverses__isnull=False).values("reverses_id")
    actions = (
        ScoreHistory.objects.filter(user_id=entry.user_id, kind=ScoreHistory.Kind.ACTION)
        .exclude(pk__in=reversed_ids)
        .order_by("created_at")
    )
    return [
        h
        for h in actions
        if any(b.get("board") == entry.board_id and b.get("period") == entry.period_key for b in h.boards or [])
    ]


def _entry_recompute(*, spec: BoardSpec, entry: BoardEntry, now: dt.datetime) -> int | None:
    """Re-derive a best/set entry from the actions that remain; returns the new score or None."""
    remaining = _history_actions_on(entry)
    if not remaining:
        return None
    score: int | None = None
    reached = now
    for action in remaining:
        new = spec.combine(score, action.score_increment)
        if new != score:
            score, reached = new, action.created_at
    assert score is not None
    entry.reached_at = reached
    return score


@dataclass(frozen=True)
class BoardReversal:
    board: str
    period: str
    points_removed: int
    closed_period: bool


def score_reverse(*, history: ScoreHistory, reason: str) -> ScoreHistory:
    """Compensate one applied action on every board it fed (history stays append-only).

    Idempotent: an action that was already reversed returns the existing reversal. A board whose
    period has closed gets its archive corrected: final ranks re-frozen, and the period marked
    corrected. ``reversal.boards`` says what changed on each board.
    """
    with transaction.atomic():
        existing = ScoreHistory.objects.filter(reverses=history).first()
        if existing is not None:
            return existing
        if history.kind != ScoreHistory.Kind.ACTION:
            raise ApiError("Only actions can be reversed.", code="not_reversible")
        now = timezone.now()
        player = User.objects.select_for_update().get(pk=history.user_id)
        fed = list(history.boards or []) or [{"board": GLOBAL_ID, "period": "all"}]
        # The reversal row goes in first, so a best/set board re-derived below no longer sees the action.
        reversal = ScoreHistory.objects.create(
            user_id=player.pk,
            kind=ScoreHistory.Kind.REVERSAL,
            score_increment=-history.score_increment,
            old_score=player.current_score,
            new_score=player.current_score,
            action_type=history.action_type,
            action_token_hash=history.action_token_hash,
            reverses=history,
            metadata={"reason": reason},
        )
        changed: list[dict[str, Any]] = []
        corrected_closed: list[tuple[BoardSpec, str]] = []
        for item in fed:
            board_id, period_key = item["board"], item["period"]
            spec = registry.board_get(board_id)
            entry = (
                BoardEntry.objects.select_for_update()
                .filter(board_id=board_id, period_key=period_key, user_id=player.pk)
                .first()
            )
            if spec is None or entry is None:
                continue
            old = entry.score
            new: int | None = (
                old - history.score_increment
                if spec.operator == OP_INCR
                else _entry_recompute(spec=spec, entry=entry, now=now)
            )
            if new is None:
                entry.delete()
            elif new != old:
                entry.prev_score, entry.prev_reached_at = old, entry.reached_at
                entry.score, entry.sort_value = new, spec.sort_value(new)
                if spec.operator == OP_INCR:
                    entry.reached_at = now
                entry.version += 1
                entry.updated_at = now
                entry.save()
            changed.append({"board": board_id, "period": period_key, "old": old, "new": new})
            period = BoardPeriod.objects.filter(board_id=board_id, key=period_key).first()
            if period is not None and period.closed_at is not None:
                corrected_closed.append((spec, period_key))
        if any(c["board"] == GLOBAL_ID for c in changed):
            player.current_score -= history.score_increment
            player.score_reached_at = now
        player.score_version += 1
        player.save(update_fields=["current_score", "score_reached_at", "score_version", "updated_at"])
        reversal.new_score = player.current_score
        reversal.boards = changed
        reversal.save(update_fields=["new_score", "boards"])
        for spec, period_key in corrected_closed:
            period_freeze(spec=spec, period_key=period_key, corrected_at=now)
        user_id = str(player.pk)
        touched = [(registry.board_get(c["board"]), c["period"]) for c in changed]
        transaction.on_commit(lambda: _after_correction(user_id=user_id, touched=touched))
    return reversal


def _after_correction(*, user_id: str, touched: Sequence[tuple[BoardSpec | None, str]]) -> None:
    for spec, period_key in touched:
        if spec is None:
            continue
        entry = BoardEntry.objects.filter(board_id=spec.id, period_key=period_key, user_id=user_id).select_related(
            "user"
        )
        found = entry.first()
        index = redis_index(spec, period_key)
        if index is not None:
            try:
                if found is not None:
                    _entry_index_sync(spec=spec, entry=found)
                else:  # the entry is gone (its only action was reversed)
                    index.forget(user_id)
            except REDIS_ERRORS:
                logger.warning("redis unavailable; %s/%s left for the drift check", spec.id, period_key)
        events.emit_board_corrected(events.BoardCorrected(board=spec, period=period_key))


# ---------------------------------------------------------------------------------------------
# Rebuild and drift check (every board, every live period)
# ---------------------------------------------------------------------------------------------
def live_periods(*, board: BoardSpec | None = None) -> list[tuple[BoardSpec, str]]:
    """(board, period key) of every period whose Redis index is live, ``global`` first."""
    specs = [board] if board is not None else registry.boards_all()
    out: list[tuple[BoardSpec, str]] = []
    now = timezone.now()
    for spec in specs:
        keys = set(
            BoardPeriod.objects.filter(board_id=spec.id, index_dropped_at__isnull=True).values_list("key", flat=True)
        )
        keys.add(spec.period_at(now).key)
        out.extend((spec, key) for key in sorted(keys))
    return out


def index_rebuild(*, spec: BoardSpec, period_key: str, progress: Bar | None = None) -> int:
    """Rebuild one (board, period) index from PostgreSQL; returns the number of players indexed.

    Changes committed while the rebuild runs are re-applied afterwards (version-guarded). An entry's
    ``updated_at`` is the update's clock, taken before its write commits: an update that read the
    clock just before the rebuild started, committed after the rebuild's read and wrote its index
    entry before the rebuild replaced the index would be in neither, so the re-apply looks back
    ``REBUILD_CATCH_UP`` before the start (re-applying an entry twice changes nothing).
    ``progress`` (scoreboard.progress) is told of each entry read, for the command's bar.
    """
    index = redis_index(spec, period_key)
    if index is None:
        return 0
    started = timezone.now() - REBUILD_CATCH_UP
    entries = selectors.index_entries(spec=spec, period_key=period_key)
    count = index.replace_all(entries if progress is None else counted(entries, progress))
    for entry in BoardEntry.objects.filter(
        board_id=spec.id, period_key=period_key, updated_at__gte=started
    ).select_related("user"):
        _entry_index_sync(spec=spec, entry=entry)
    return count


def index_rebuild_soon(*, spec: BoardSpec, period_key: str) -> None:
    """An index that lost its "built" mark: rebuild it now, once (a short Redis lock dedups)."""
    client = get_redis()
    if client is None:
        return
    lock_key = f"sb:rebuild-lock:{spec.id}:{period_key}"
    try:
        if not client.set(lock_key, "1", nx=True, ex=REBUILD_LOCK_SECONDS):
            return
        logger.warning("index of %s/%s had no built mark (Redis lost it): rebuilding", spec.id, period_key)
        index_rebuild(spec=spec, period_key=period_key)
        client.delete(lock_key)
        # No broadcast here: the one caller, the update path, publishes the board right after.
    except REDIS_ERRORS:
        logger.warning("redis unavailable; rebuild of %s/%s left for the drift check", spec.id, period_key)


REBUILD_LOCK_SECONDS = 60
# How long before a rebuild's start an update's clock may have been read with its write still to
# commit (far more than an update takes; the drift check repairs what takes longer).
REBUILD_CATCH_UP = dt.timedelta(seconds=30)


def leaderboard_rebuild(*, board: BoardSpec | None = None) -> int:
    """Rebuild the index of every live period of ``board`` (every board by default); returns players indexed."""
    return sum(index_rebuild(spec=spec, period_key=key) for spec, key in live_periods(board=board))


@dataclass(frozen=True)
class DriftReport:
    checked: int
    missing: int
    stale: int
    extra: int
    repaired: bool


def _drift_one(*, spec: BoardSpec, period_key: str, repair: bool) -> DriftReport:
    index = redis_index(spec, period_key)
    if index is None:
        return DriftReport(checked=0, missing=0, stale=0, extra=0, repaired=False)
    if repair and not index.is_built():
        # Redis lost this index (restarted empty, flushed): readers do not trust it until rebuilt.
        count = index_rebuild(spec=spec, period_key=period_key)
        logger.warning("index of %s/%s was not built (Redis lost it): rebuilt %d entries", spec.id, period_key, count)
        _repaired_broadcast(spec=spec, period_key=period_key)
        return DriftReport(checked=count, missing=count, stale=0, extra=0, repaired=True)
    started = timezone.now()
    indexed = index.versions()
    expected = {e.user_id: e for e in selectors.index_entries(spec=spec, period_key=period_key)}
    # Entries changed since the check started are being indexed by their own writes: not drift.
    moving = {
        str(uid)
        for uid in BoardEntry.objects.filter(
            board_id=spec.id, period_key=period_key, updated_at__gte=started
        ).values_list("user_id", flat=True)
    }
    missing = [uid for uid in expected if uid not in indexed and uid not in moving]
    stale = [uid for uid, e in expected.items() if uid in indexed and indexed[uid] < e.version and uid not in moving]
    extra = [uid for uid in indexed if uid not in expected and uid not in moving]
    drifted = bool(missing or stale or extra)
    if drifted:
        logger.warning(
            "leaderboard drift on %s/%s: missing=%d stale=%d extra=%d",
            spec.id,
            period_key,
            len(missing),
            len(stale),
            len(extra),
        )
    if drifted and repair:
        for uid in missing + stale:
            entry = (
                BoardEntry.objects.filter(board_id=spec.id, period_key=period_key, user_id=uid)
                .select_related("user")
                .first()
            )
            if entry is not None:
                _entry_index_sync(spec=spec, entry=entry)
        for uid in extra:
            index.forget(uid)
        _repaired_broadcast(spec=spec, period_key=period_key)
    return DriftReport(
        checked=len(expected), missing=len(missing), stale=len(stale), extra=len(extra), repaired=drifted and repair
    )


def _repaired_broadcast(*, spec: BoardSpec, period_key: str) -> None:
    """The index was repaired: spectators get the board as PostgreSQL has it now (the updates that
    drifted, typically applied while Redis was down or hung, were never broadcast). The live layer
    publishes only if the top changed."""
    events.emit_board_corrected(events.BoardCorrected(board=spec, period=period_key, repair=True))


def leaderboard_drift_check(*, board: BoardSpec | None = None, repair: bool = True) -> DriftReport:
    """Compare every live index with PostgreSQL player by player (by version) and repair only what differs."""
    reports = [_drift_one(spec=spec, period_key=key, repair=repair) for spec, key in live_periods(board=board)]
    return DriftReport(
        checked=sum(r.checked for r in reports),
        missing=sum(r.missing for r in reports),
        stale=sum(r.stale for r in reports),
        extra=sum(r.extra for r in reports),
        repaired=any(r.repaired for r in reports),
    )


def used_nonces_purge(*, older_than: dt.datetime) -> int:
    """Delete claimed nonces whose tokens can no longer verify (their window has passed)."""
    deleted, _ = UsedNonce.objects.filter(created_at__lt=older_than).delete()
    return deleted


# ---------------------------------------------------------------------------------------------
# Periods: freezing final standings
# ---------------------------------------------------------------------------------------------
_RANK_OVER = {
    TIE_FIRST_REACHED: "ROW_NUMBER() OVER (ORDER BY be.sort_value, be.reached_at, be.user_id)",
    TIE_COMPETITION: "RANK() OVER (ORDER BY be.sort_value)",
    TIE_DENSE: "DENSE_RANK() OVER (ORDER BY be.sort_value)",
}

_UNRANK_SQL = "UPDATE board_entries SET final_rank = NULL WHERE board_id = %s AND period_key = %s"
# UPDATE ... FROM: one pass in PostgreSQL and in SQLite (3.33+), where a correlated sub-select
# would rank the period once per row.
_FREEZE_SQL = """
UPDATE board_entries SET final_rank = r.rank
  FROM (SELECT be.id, {rank} AS rank
          FROM board_entries be JOIN users u ON u.id = be.user_id
         WHERE be.board_id = %s AND be.period_key = %s AND u.is_active AND NOT u.is_quarantined) AS r
 WHERE board_entries.id = r.id
"""


def period_freeze(*, spec: BoardSpec, period_key: str, corrected_at: dt.datetime | None = None) -> int:
    """Store the final rank of every entry of a period (hidden and banned players get none).

    Runs when a period closes, and again when a moderator corrects a closed period
    (``corrected_at``). Returns the number of ranked players.
    """
    sql = _FREEZE_SQL.format(rank=_RANK_OVER[spec.tie_policy])
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(_UNRANK_SQL, [spec.id, period_key])
        cursor.execute(sql, [spec.id, period_key])
        ranked = BoardEntry.objects.filter(board_id=spec.id, period_key=period_key, final_rank__isnull=False).count()
        period = spec.period_by_key(period_key)
        status, _ = BoardPeriod.objects.get_or_create(
            board_id=spec.id, key=period_key, defaults={"starts_at": period.starts_at, "ends_at": period.ends_at}
        )
        status.entry_count = ranked
        status.closed_at = status.closed_at or timezone.now()
        if corrected_at is not None:
            status.corrected_at = corrected_at
        status.save(update_fields=["entry_count", "closed_at", "corrected_at"])
    return ranked
