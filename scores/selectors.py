"""Score reads: every board's pages, a player's rank, neighbours, friends, standings and exports.

A live period is read from its Redis index when it answers and is complete ("built"); otherwise,
and for closed periods (whose final ranks are frozen in PostgreSQL), from PostgreSQL. Both paths
order and rank by the one rule of ``scores.boards`` and give the same answers.

Quarantined players are left out of every public read (``viewer`` ≠ the player); a player's own
reads (``me``) still show them where they would stand, so they cannot tell.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from django.core import signing
from django.db.models import Max, Q, QuerySet
from django.utils import timezone

from accounts.models import User
from scoreboard.errors import ApiError, NotFound
from scoreboard.redis import REDIS_ERRORS
from scores import registry
from scores.boards import (
    GLOBAL_ID,
    TIE_COMPETITION,
    TIE_DENSE,
    BoardSpec,
    Period,
    PeriodError,
    RankStart,
    rank_numbers,
)
from scores.models import BoardEntry, BoardPeriod
from scores.ranking import IndexEntry, RedisIndex, member_for, reached_from_member, redis_index, user_id_from_inverted

logger = logging.getLogger(__name__)

ORDER = ("sort_value", "reached_at", "user_id")
CURSOR_SALT = "scoreboard.boards.cursor"
# A cursor remembers this many hex digits of each player id on the page it ends, so the next page
# never repeats one of them even when a score moved them across the cursor meanwhile.
CURSOR_ID_DIGITS = 8

# Re-exported for other apps (they use this app through its selectors and services).
board_get = registry.board_get
boards_active = registry.boards_active
boards_all = registry.boards_all


@dataclass(frozen=True)
class BoardRow:
    rank: int
    user_id: str
    username: str
    score: int
    last_updated: str

    def as_dict(self) -> dict[str, object]:
        """The row as every read path shows it (REST, WebSocket, SSE, page, export)."""
        return {
            "rank": self.rank,
            "user_id": self.user_id,
            "username": self.username,
            "score": self.score,
            "last_updated": self.last_updated,
        }


@dataclass(frozen=True)
class BoardPage:
    rows: list[BoardRow]
    total_players: int
    last_updated: str | None
    source: str  # "redis" or "database"
    next_cursor: str | None = None
    # Answers already rendered from this page (by the API, keyed by its name), shared by every copy
    # the page cache hands out of it: an unchanged board is encoded once per process and version.
    rendered: dict[str, bytes] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True)
class Standing:
    """One player on one board's period."""

    rank: int
    user_id: str
    username: str
    score: int
    last_updated: str
    entry_count: int
    position: int  # 0-based place in the board's order

    @property
    def percentile(self) -> float:
        """Share of the board at or below this player, in percent (100 = the top)."""
        if self.entry_count <= 1:
            return 100.0
        return round(100.0 * (self.entry_count - self.position - 1) / (self.entry_count - 1), 2)

    def row(self) -> BoardRow:
        return BoardRow(self.rank, self.user_id, self.username, self.score, self.last_updated)


def _iso(value: dt.datetime | None) -> str | None:
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z") if value else None


# ---------------------------------------------------------------------------------------------
# Periods
# ---------------------------------------------------------------------------------------------
def period_resolve(*, spec: BoardSpec, value: str | None, now: dt.datetime | None = None) -> Period:
    """``current``/``previous``/a key → the period; 400 for a key this board cannot have."""
    try:
        return spec.resolve_period(value, now=now or timezone.now())
    except PeriodError as exc:
        raise ApiError(
            f"period must be 'current', 'previous' or a period key of board {spec.id!r}.",
            code="invalid_period",
        ) from exc


def period_status(*, spec: BoardSpec, period: Period) -> BoardPeriod | None:
    return BoardPeriod.objects.filter(board_id=spec.id, key=period.key).first()


def _period_frozen(spec: BoardSpec, period: Period) -> bool:
    """Closed periods are read from their frozen archive in PostgreSQL.

    Only a period that has ended can be closed (the beat task and the admin action close ended
    periods; a reversal re-freezes only closed ones), so the current period and all time are never
    frozen: no query on the read path of the live boards.
    """
    if not period.ended(timezone.now()):
        return False
    status = period_status(spec=spec, period=period)
    return status is not None and status.closed_at is not None


def period_payload(*, spec: BoardSpec, period: Period) -> dict[str, object]:
    # A period that has not ended is never closed or corrected (see _period_frozen): no query.
    status = period_status(spec=spec, period=period) if period.ended(timezone.now()) else None
    return {
        "key": period.key,
        "starts_at": _iso(period.starts_at),
        "ends_at": _iso(period.ends_at),
        "closed": bool(status and status.closed_at),
        "corrected": bool(status and status.corrected_at),
    }


# ---------------------------------------------------------------------------------------------
# PostgreSQL reads
# ---------------------------------------------------------------------------------------------
def _entries(spec: BoardSpec, period_key: str) -> QuerySet[BoardEntry]:
    return BoardEntry.objects.filter(board_id=spec.id, period_key=period_key, user__is_active=True)


def _public(spec: BoardSpec, period_key: str) -> QuerySet[BoardEntry]:
    return _entries(spec, period_key).filter(user__is_quarantined=False)


def _ahead_q(sort_value: int, reached_at: dt.datetime, user_id: object) -> Q:
    return (
        Q(sort_value__lt=sort_value)
        | Q(sort_value=sort_value, reached_at__lt=reached_at)
        | Q(sort_value=sort_value, reached_at=reached_at, user_id__lt=user_id)
    )


def _rank_start(qs: QuerySet[BoardEntry], *, position: int, sort_value: int, spec: BoardSpec) -> RankStart:
    better = better_distinct = 0
    if spec.tie_policy == TIE_COMPETITION:
        better = qs.filter(sort_value__lt=sort_value).count()
    elif spec.tie_policy == TIE_DENSE:
        better_distinct = qs.filter(sort_value__lt=sort_value).values("sort_value").distinct().count()
    return RankStart(position=position, better=better, better_distinct=better_distinct)


def _db_rows(spec: BoardSpec, entries: Sequence[BoardEntry], start: RankStart, frozen: bool) -> list[BoardRow]:
    ranks = rank_numbers(spec, [e.score for e in entries], start)
    return [
        BoardRow(
            rank=(e.final_rank or rank) if frozen else rank,
            user_id=str(e.user_id),
            username=e.user.username,
            score=e.score,
            last_updated=_iso(e.reached_at) or "",
        )
        for e, rank in zip(entries, ranks, strict=True)
    ]


def _db_page(
    spec: BoardSpec,
    period_key: str,
    *,
    limit: int,
    offset: int = 0,
    after: tuple[int, dt.datetime, str] | None = None,
    frozen: bool = False,
) -> tuple[list[BoardRow], list[BoardEntry]]:
    public = _public(spec, period_key)
    qs = public.select_related("user").only(
        "user_id", "score", "sort_value", "reached_at", "final_rank", "user__username"
    )
    if after is not None:
        qs = qs.exclude(_ahead_q(*after)).exclude(sort_value=after[0], reached_at=after[1], user_id=after[2])
        entries = list(qs.order_by(*ORDER)[:limit])
        position = (
            public.filter(_ahead_q(entries[0].sort_value, entries[0].reached_at, entries[0].user_id)).count()
            if entries
            else 0
        )
    else:
        entries = list(qs.order_by(*ORDER)[offset : offset + limit])
        position = offset
    if not entries:
        return [], []
    start = _rank_start(public, position=position, sort_value=entries[0].sort_value, spec=spec)
    return _db_rows(spec, entries, start, frozen), entries


def _db_summary(spec: BoardSpec, period_key: str) -> tuple[int, str | None]:
    summary = _public(spec, period_key).aggregate(last=Max("reached_at"))
    return _public(spec, period_key).count(), _iso(summary["last"])


def rank_in_db(
    *,
    spec: BoardSpec,
    period_key: str,
    user_id: str,
    score: int | None,
    reached_at: dt.datetime | None,
    exclude_self: bool = False,
    at_most: int | None = None,
) -> int | None:
    """1-based rank a player with this score and time has among the public players (None if unranked).

    ``exclude_self``: after an update the player's own row holds the new score, which would
    otherwise count as "ahead" of the old one. ``at_most``: count no more than this many players
    ahead (``COUNT`` over a ``LIMIT`` subquery: an index range, never the whole board) and answer
    None beyond; the update path uses it while Redis is down.
    """
    if score is None or reached_at is None:
        return None
    public = _public(spec, period_key)
    if exclude_self:
        public = public.exclude(user_id=user_id)
    sort_value = spec.sort_value(score)
    if spec.tie_policy == TIE_COMPETITION:
        ahead: QuerySet[Any] = public.filter(sort_value__lt=sort_value)
    elif spec.tie_policy == TIE_DENSE:
        ahead = public.filter(sort_value__lt=sort_value).values("sort_value").distinct()
    else:
        ahead = public.filter(_ahead_q(sort_value, reached_at, user_id)).exclude(user_id=user_id)
    if at_most is None:
        return ahead.count() + 1
    counted = ahead[:at_most].count()
    return None if counted >= at_most else counted + 1


def _db_standings(spec: BoardSpec, period_key: str, user_ids: Sequence[str], *, frozen: bool) -> dict[str, Standing]:
    public = _public(spec, period_key)
    total = public.count()
    out: dict[str, Standing] = {}
    for entry in _entries(spec, period_key).filter(user_id__in=list(user_ids)).select_related("user"):
        uid = str(entry.user_id)
        position = (
            public.filter(_ahead_q(entry.sort_value, entry.reached_at, entry.user_id))
            .exclude(user_id=entry.user_id)
            .count()
        )
        rank = rank_in_db(spec=spec, period_key=period_key, user_id=uid, score=entry.score, reached_at=entry.reached_at)
        assert rank is not None
        out[uid] = Standing(
            rank=(entry.final_rank or rank) if frozen else rank,
            user_id=uid,
            username=entry.user.username,
            score=entry.score,
            last_updated=_iso(entry.reached_at) or "",
            entry_count=total,
            position=position,
        )
    return out


# ---------------------------------------------------------------------------------------------
# Cursors: opaque, signed, bound to a board and a period
# ---------------------------------------------------------------------------------------------
def _short(user_id: str) -> str:
    return hashlib.blake2b(user_id.encode(), digest_size=CURSOR_ID_DIGITS // 2).hexdigest()


def cursor_make(
    *, spec: BoardSpec, period: Period, last: BoardRow, member: str, zscore: int, page: Sequence[str]
) -> str:
    payload = {"b": spec.id, "p": period.key, "z": zscore, "m": member, "x": [_short(u) for u in page]}
    return signing.dumps(payload, salt=CURSOR_SALT, compress=True)


@dataclass(frozen=True)
class Cursor:
    zscore: int
    member: str
    seen: frozenset[str]

    def db_key(self, spec: BoardSpec) -> tuple[int, dt.datetime, str]:
        score = spec.score_from_zscore(self.zscore)
        return spec.sort_value(score), reached_from_member(self.member), user_id_from_inverted(self.member[16:])


def cursor_read(raw: str, *, spec: BoardSpec, period: Period) -> Cursor:
    try:
        payload = signing.loads(raw, salt=CURSOR_SALT)
        cursor = Cursor(int(payload["z"]), str(payload["m"]), frozenset(payload["x"]))
        board, key = payload["b"], payload["p"]
    except (signing.BadSignature, KeyError, TypeError, ValueError) as exc:
        raise ApiError("cursor is not valid (use next_cursor as given).", code="invalid_cursor") from exc
    if board != spec.id or key != period.key:
        raise ApiError("cursor belongs to another board or period.", code="invalid_cursor")
    return cursor


# ---------------------------------------------------------------------------------------------
# Board reads
# ---------------------------------------------------------------------------------------------
def _live_index(spec: BoardSpec, period: Period) -> RedisIndex | None:
    if _period_frozen(spec, period):
        return None
    return redis_index(spec, period.key)


class _PageCache:
    """Pages read from an index, kept with the index version they were read at (``ranking``'s "v").

    A page (first pages and offsets; cursor pages are each client's own) is served again while
    the index still has that version: the one round trip to Redis then only compares versions, and
    nothing is decoded or ranked again. Every change of the index bumps its version (in every
    process's Redis, so every process's copy is dropped at the next read after a change).
    """

    MAX_PAGES = 512

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pages: OrderedDict[tuple[Any, ...], tuple[str, BoardPage]] = OrderedDict()

    def get(self, key: tuple[Any, ...]) -> tuple[str, BoardPage] | None:
        with self._lock:
            found = self._pages.get(key)
            if found is not None:
                self._pages.move_to_end(key)
            return found

    def put(self, key: tuple[Any, ...], version: str, page: BoardPage) -> None:
        with self._lock:
            self._pages[key] = (version, page)
            self._pages.move_to_end(key)
            while len(self._pages) > self.MAX_PAGES:
                self._pages.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._pages.clear()


_page_cache = _PageCache()


def board_page(
    *,
    spec: BoardSpec,
    period: Period,
    limit: int,
    cursor: str | None = None,
    offset: int = 0,
    counters: Any = None,
) -> BoardPage:
    """One page of a board's period in the ordering rule, with the cursor of the next page.

    Consecutive pages never show one player twice, even while scores change underneath: the
    cursor is a position in the order (zscore, member) plus the ids of the page it ends.
    ``counters``: the request's rate-limit hits (``scoreboard.ratelimit.PendingLimits``), counted in
    the index read's round trip (429 when over), or before the database is read.
    """
    after = cursor_read(cursor, spec=spec, period=period) if cursor else None
    want = limit + (len(after.seen) if after else 0)
    index = _live_index(spec, period)
    if index is not None:
        cache_key = (index, offset, want)
        cached = None if after else _page_cache.get(cache_key)
        try:
            page = (
                index.page_after(zscore=after.zscore, member=after.member, limit=want)
                if after
                else index.page_unless(
                    version=cached[0] if cached else "", offset=offset, limit=want, counters=counters
                )
            )
        except REDIS_ERRORS:
            logger.warning("redis unavailable; serving %s/%s from the database", spec.id, period.key)
        else:
            if page is None:
                assert cached is not None
                # The index has not changed since this copy was read (a list of its own per caller).
                return replace(cached[1], rows=list(cached[1].rows))
            if page.built:
                kept = [r for r in page.rows if not (after and _short(r.user_id) in after.seen)][:limit]
                rows = [BoardRow(r.rank, r.user_id, r.username, r.score, r.last_updated) for r in kept]
                next_cursor = (
                    cursor_make(
                        spec=spec,
                        period=period,
                        last=rows[-1],
                        member=kept[-1].member,
                        zscore=kept[-1].zscore,
                        page=[r.user_id for r in rows],
                    )
                    if len(rows) == limit and page.start + page.rows.index(kept[-1]) + 1 < page.total_players
                    else None
                )
                result = BoardPage(rows, page.total_players, page.last_updated, "redis", next_cursor)
                if after is None and page.version:
                    _page_cache.put(cache_key, page.version, result)
                return result
    if counters is not None:
        counters.flush()  # not counted in Redis: counted now, before the database is read
    frozen = _period_frozen(spec, period)
    rows, entries = _db_page(
        spec, period.key, limit=want, offset=offset, after=after.db_key(spec) if after else None, frozen=frozen
    )
    pairs = [(r, e) for r, e in zip(rows, entries, strict=True) if not (after and _short(r.user_id) in after.seen)]
    pairs = pairs[:limit]
    total, last_updated = _db_summary(spec, period.key)
    next_cursor = None
    if len(pairs) == limit:
        last_row, last_entry = pairs[-1]
        more = (
            _public(spec, period.key)
            .exclude(_ahead_q(last_entry.sort_value, last_entry.reached_at, last_entry.user_id))
            .exclude(user_id=last_entry.user_id)
            .exists()
        )
        if more:
            next_cursor = cursor_make(
                spec=spec,
                period=period,
                last=last_row,
                member=member_for(user_id=last_row.user_id, reached_at=last_entry.reached_at),
                zscore=spec.zscore(last_entry.score),
                page=[r.user_id for r, _ in pairs],
            )
    return BoardPage([r for r, _ in pairs], total, last_updated, "database", next_cursor)


def leaderboard_top(
    *, limit: int, board: BoardSpec | None = None, period: Period | None = None, counters: Any = None
) -> BoardPage:
    """The top ``limit`` players of ``board`` (``global`` by default), current period by default."""
    spec = board or registry.board_get(GLOBAL_ID)
    assert spec is not None
    return board_page(spec=spec, period=period or spec.period_at(timezone.now()), limit=limit, counters=counters)


def standings_of(
    *, spec: BoardSpec, period: Period, user_ids: Sequence[str], viewer_id: str | None = None
) -> tuple[int, dict[str, Standing]]:
    """(public players, {user id: standing}) of these players; quarantined players only for themselves."""
    index = _live_index(spec, period)
    found: dict[str, Standing] | None = None
    total = 0
    if index is not None:
        try:
            built, total, indexed = index.standings(list(user_ids))
        except REDIS_ERRORS:
            logger.warning("redis unavailable; ranking %s/%s from the database", spec.id, period.key)
        else:
            if built:
                found = {
                    uid: Standing(s.rank, uid, s.username, s.score, s.last_updated, total, s.position)
                    for uid, s in indexed.items()
                    if not s.hidden or uid == viewer_id
                }
    if found is None:
        frozen = _period_frozen(spec, period)
        found = _db_standings(spec, period.key, user_ids, frozen=frozen)
        total = _public(spec, period.key).count()
        hidden = {
            str(u) for u in User.objects.filter(pk__in=list(found), is_quarantined=True).values_list("id", flat=True)
        }
        found = {uid: s for uid, s in found.items() if uid not in hidden or uid == viewer_id}
    return total, found


def player_standing(*, spec: BoardSpec, period: Period, user_id: str, viewer_id: str | None = None) -> Standing:
    """The player's rank, score and percentile; 404 ``not_ranked`` when they have no (visible) entry."""
    _, found = standings_of(spec=spec, period=period, user_ids=[user_id], viewer_id=viewer_id)
    standing = found.get(user_id)
    if standing is None:
        raise NotFound("This player has no entry on this board in this period.", code="not_ranked")
    return standing


def around_player(
    *, spec: BoardSpec, period: Period, user_id: str, above: int, below: int, viewer_id: str | None = None
) -> tuple[Standing, list[BoardRow]]:
    """The player and their neighbours: ``above + below + 1`` rows when the board has that many.

    At the top or the bottom of the board the window fills from the other side.
    """
    me = player_standing(spec=spec, period=period, user_id=user_id, viewer_id=viewer_id)
    hidden_self = viewer_id == user_id and _is_hidden(user_id)
    total = me.entry_count + (1 if hidden_self else 0)
    size = above + below + 1
    start = max(0, min(me.position - above, total - size))
    if hidden_self:
        # The player is not in the public order: read the others, and put them back in their place.
        others = board_page(spec=spec, period=period, limit=size - 1, offset=start).rows
        before = [r for r in others if r.rank < me.rank or (r.rank == me.rank and r.user_id < user_id)]
        after = [r for r in others if r not in before]
        return me, [*before, me.row(), *after][:size]
    return me, board_page(spec=spec, period=period, limit=size, offset=start).rows


def _is_hidden(user_id: str) -> bool:
    return User.objects.filter(pk=user_id, is_quarantined=True).exists()


@dataclass(frozen=True)
class LookupRow:
    standing: Standing
    rank_in_set: int


def board_lookup(
    *, spec: BoardSpec, period: Period, user_ids: Sequence[str], viewer_id: str | None = None
) -> tuple[list[LookupRow], list[str]]:
    """These players' entries (friends, a clan) in board order, each with its rank within the set."""
    unique = list(dict.fromkeys(user_ids))
    _, found = standings_of(spec=spec, period=period, user_ids=unique, viewer_id=viewer_id)
    ordered = sorted(found.values(), key=lambda s: s.position)
    ranks = rank_numbers(spec, [s.score for s in ordered], RankStart(0, 0, 0))
    rows = [LookupRow(s, r) for s, r in zip(ordered, ranks, strict=True)]
    return rows, [uid for uid in unique if uid not in found]


@dataclass(frozen=True)
class BoardStanding:
    spec: BoardSpec
    period: Period
    standing: Standing


def player_board_standings(*, user_id: str, viewer_id: str | None = None) -> list[BoardStanding]:
    """The player on every active board, current period (boards where they have no entry are left out)."""
    now = timezone.now()
    out: list[BoardStanding] = []
    for spec in registry.boards_active():
        period = spec.period_at(now)
        _, found = standings_of(spec=spec, period=period, user_ids=[user_id], viewer_id=viewer_id)
        if user_id in found:
            out.append(BoardStanding(spec, period, found[user_id]))
    return out


def export_rows(*, spec: BoardSpec, period: Period, batch: int = 1000) -> Iterator[BoardRow]:
    """Every public entry of a period in board order, streamed from PostgreSQL in keyset batches."""
    frozen = _period_frozen(spec, period)
    after: tuple[int, dt.datetime, str] | None = None
    position = 0
    while True:
        rows, entries = _db_page(spec, period.key, limit=batch, after=after, frozen=frozen)
        if not rows:
            return
        yield from rows
        position += len(rows)
        last = entries[-1]
        after = (last.sort_value, last.reached_at, str(last.user_id))


def entry_counts(*, specs: Sequence[BoardSpec], now: dt.datetime | None = None) -> dict[str, int]:
    """Public players in each board's current period."""
    now = now or timezone.now()
    out: dict[str, int] = {}
    for spec in specs:
        period = spec.period_at(now)
        index = redis_index(spec, period.key)
        if index is not None:
            try:
                built, total, _ = index.standings([])
            except REDIS_ERRORS:
                built = False
            if built:
                out[spec.id] = total
                continue
        out[spec.id] = _public(spec, period.key).count()
    return out


# ---------------------------------------------------------------------------------------------
# For the index (rebuilds, drift checks, corrections)
# ---------------------------------------------------------------------------------------------
def index_entry(entry: BoardEntry) -> IndexEntry:
    return IndexEntry(
        user_id=str(entry.user_id),
        username=entry.user.username,
        score=entry.score,
        version=entry.version,
        reached_at=entry.reached_at,
        last_updated=entry.reached_at,
        hidden=entry.user.is_quarantined,
    )


def index_entries(*, spec: BoardSpec, period_key: str) -> Iterator[IndexEntry]:
    """Every entry of active players in a period as index entries, streamed from the database."""
    entries = (
        _entries(spec, period_key)
        .select_related("user")
        .only("user_id", "score", "version", "reached_at", "user__username", "user__is_quarantined")
        .order_by("id")
    )
    for entry in entries.iterator(chunk_size=2000):
        yield index_entry(entry)
