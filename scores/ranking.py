"""The Redis ranking index: one sorted set per live (board, period) — the one place that knows its keys.

The ordering rule itself lives in ``scores.boards`` (better score, then earliest reached, then
user id). Here it is encoded for Redis: the zset score is the board's *zscore* (the score on
high-wins boards, minus the score on low-wins boards), and the member is
``<inverted reached-at µs, 16 digits><inverted user-id hex, 32 chars>``. Redis orders equal scores
by member bytes and ZREVRANGE walks them in reverse, so for every board the best zscore, then an
earlier time (bigger inverted value), then a smaller id (bigger inverted hex) come first. The
member decodes back to the user id.

Beside the zset (``z``), a hash (``m``) maps ``inverted id -> "version|member|last_updated|hidden|
zscore|username"``. Writes carry the PostgreSQL entry version and a Lua script ignores any write
that is not newer than the one stored, so retries and out-of-order writes cannot corrupt the index
(the DESIGN's "ZADD GT"). A *hidden* player (quarantined) keeps their hash entry but is not in the
zset: public reads and everyone else's ranks skip them, while their own rank is computed as if they
were there. Dense boards also keep the set of distinct zscores (``d``) and a count per zscore
(``c``), so a dense rank is one ZCOUNT. ``s`` holds ``last_updated`` and ``built``: an index that
lacks ``built`` (a Redis that restarted empty, or was flushed) is not trusted by readers.

Keys are hash-tagged by board (``sb:{b:<board>}:<period>:z``): every script touches one slot, so
the index works on Redis Cluster.
"""

from __future__ import annotations

import datetime as dt
import functools
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import redis

from scoreboard.ratelimit_cache import with_counters
from scoreboard.redis import ScriptCall, get_redis, registered_script, script_run, source_run
from scores.boards import (
    ALL_TIME_KEY,
    GLOBAL_SPEC,
    TIE_COMPETITION,
    TIE_DENSE,
    BoardSpec,
    RankStart,
    rank_numbers,
)

MAX_REACHED_US = 10**16 - 1  # 16 digits of microseconds reach the year 2286
_HEX = "0123456789abcdef"
_INVERT_HEX = str.maketrans(_HEX, _HEX[::-1])
TIME_DIGITS = 16
NO_RANK = -1
PARTS = ("z", "m", "s", "d", "c")


def board_tag(board_id: str) -> str:
    """The hash tag every key of one board carries (one Redis Cluster slot per board)."""
    return f"sb:{{b:{board_id}}}"


def index_keys(board_id: str, period_key: str) -> list[str]:
    base = f"{board_tag(board_id)}:{period_key}"
    return [f"{base}:{part}" for part in PARTS]


@functools.lru_cache(maxsize=8192)
def inverted_id(user_id: str) -> str:
    """The member suffix of a player in the index (hex digits inverted); remembered per process:
    an update asks for it once per board and again in its member."""
    return user_id.replace("-", "").lower().translate(_INVERT_HEX)


def user_id_from_inverted(inv: str) -> str:
    h = inv.translate(_INVERT_HEX)
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def reached_us(reached_at: dt.datetime) -> int:
    aware = reached_at if reached_at.tzinfo else reached_at.replace(tzinfo=dt.UTC)
    delta = aware - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def member_for(*, user_id: str, reached_at: dt.datetime) -> str:
    return f"{MAX_REACHED_US - reached_us(reached_at):0{TIME_DIGITS}d}{inverted_id(user_id)}"


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def reached_from_us(us: int) -> dt.datetime:
    """The inverse of :func:`reached_us`: microseconds since the epoch -> an aware UTC datetime."""
    return _EPOCH + dt.timedelta(microseconds=us)


def reached_from_member(member: str) -> dt.datetime:
    return reached_from_us(MAX_REACHED_US - int(member[:TIME_DIGITS]))


def sort_key(spec: BoardSpec, *, score: int, reached_at: dt.datetime, user_id: str) -> tuple[int, int, str]:
    """The ordering rule as a Python sort key (ascending sort = best first)."""
    return (spec.sort_value(score), reached_us(reached_at), user_id.replace("-", "").lower())


_TIE_FLAGS = {TIE_COMPETITION: "c", TIE_DENSE: "d"}


def tie_flag(spec: BoardSpec) -> str:
    """The board's tie policy as the index scripts' one-letter argument (competition, dense, else fair)."""
    return _TIE_FLAGS.get(spec.tie_policy, "f")


@dataclass(frozen=True)
class IndexEntry:
    user_id: str
    username: str
    score: int
    version: int
    reached_at: dt.datetime
    last_updated: dt.datetime
    hidden: bool = False


@dataclass(frozen=True)
class RankChange:
    old_rank: int | None
    new_rank: int | None
    applied: bool
    built: bool = True  # False: the index had no "built" mark (Redis lost it): rebuild it
    # What the after-write step run in the same call answered (``apply_then``), None without one.
    then: int | None = None


@dataclass(frozen=True)
class IndexRow:
    rank: int
    user_id: str
    username: str
    score: int
    last_updated: str
    zscore: int
    member: str


@dataclass(frozen=True)
class IndexPage:
    rows: list[IndexRow]
    total_players: int
    last_updated: str | None
    built: bool
    start: int  # 0-based position of the first row
    version: str = ""  # the index's version this page was read at ('' = unknown: do not cache it)


@dataclass(frozen=True)
class IndexStanding:
    """One player's place as the index sees it (``hidden``: quarantined, ranked as if visible)."""

    user_id: str
    rank: int
    position: int
    score: int
    last_updated: str
    username: str
    hidden: bool
    zscore: int
    member: str


# Shared Lua: the 1-based rank of (zscore, member) under the board's tie policy, whether or not the
# member is in the zset (a hidden player is ranked where they would stand).
_RANK_FN = """
local function rank_of(z, d, tie, zs, member, present)
  if tie == 'c' then return redis.call('ZCOUNT', z, '(' .. zs, '+inf') + 1 end
  if tie == 'd' then return redis.call('ZCOUNT', d, '(' .. zs, '+inf') + 1 end
  if present then return redis.call('ZREVRANK', z, member) + 1 end
  redis.call('ZADD', z, zs, member)
  local r = redis.call('ZREVRANK', z, member) + 1
  redis.call('ZREM', z, member)
  return r
end
local function position_of(z, zs, member, present)
  if present then return redis.call('ZREVRANK', z, member) end
  redis.call('ZADD', z, zs, member)
  local r = redis.call('ZREVRANK', z, member)
  redis.call('ZREM', z, member)
  return r
end
-- The index's version ("v" in s), bumped by every change of it, so readers can cache a page until the
-- next change. It starts from the server's clock in microseconds, so a flushed and re-created index
-- never repeats a version a reader holds.
local function bump(s)
  if redis.call('HEXISTS', s, 'v') == 0 then
    local t = redis.call('TIME')
    redis.call('HSET', s, 'v', string.format('%.0f', tonumber(t[1]) * 1000000 + tonumber(t[2])))
  end
  redis.call('HINCRBY', s, 'v', 1)
end
local function parse(meta)
  -- version|member|last_updated|hidden|zscore|username
  return string.match(meta, '^(%d+)|([^|]*)|([^|]*)|([01])|([^|]*)|(.*)$')
end
"""

# KEYS: z, m, s, d, c. ARGV: inverted id, version, zscore, member, last_updated, username,
# mode (add / hide / remove), tie (f / c / d). Returns {old_rank, new_rank, applied, built}, -1 = none.
_APPLY_BODY = """
local built = redis.call('HEXISTS', KEYS[3], 'built')
local tie = ARGV[8]
local cur = redis.call('HGET', KEYS[2], ARGV[1])
local old_rank = -1
if cur then
  local version, member, _, hidden, zs = parse(cur)
  if member and member ~= '' then
    old_rank = rank_of(KEYS[1], KEYS[4], tie, zs, member, hidden == '0')
  end
  if tonumber(version) >= tonumber(ARGV[2]) then return {old_rank, old_rank, 0, built} end
  if member and member ~= '' and hidden == '0' then
    redis.call('ZREM', KEYS[1], member)
    if tie == 'd' and redis.call('HINCRBY', KEYS[5], zs, -1) <= 0 then
      redis.call('HDEL', KEYS[5], zs)
      redis.call('ZREM', KEYS[4], zs)
    end
  end
end
bump(KEYS[3])
if ARGV[7] == 'remove' then
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[2] .. '||' .. ARGV[5] .. '|0||' .. ARGV[6])
  return {old_rank, -1, 1, built}
end
local visible = ARGV[7] == 'add'
if visible then
  redis.call('ZADD', KEYS[1], ARGV[3], ARGV[4])
  if tie == 'd' and redis.call('HINCRBY', KEYS[5], ARGV[3], 1) == 1 then
    redis.call('ZADD', KEYS[4], ARGV[3], ARGV[3])
  end
  local last = redis.call('HGET', KEYS[3], 'last_updated')
  if (not last) or last < ARGV[5] then redis.call('HSET', KEYS[3], 'last_updated', ARGV[5]) end
end
redis.call('HSET', KEYS[2], ARGV[1],
  ARGV[2] .. '|' .. ARGV[4] .. '|' .. ARGV[5] .. '|' .. (visible and '0' or '1') .. '|' .. ARGV[3] .. '|' .. ARGV[6])
return {old_rank, rank_of(KEYS[1], KEYS[4], tie, ARGV[3], ARGV[4], visible), 1, built}
"""
_APPLY_FN = "local function apply(KEYS, ARGV)\n" + _APPLY_BODY + "end\n"
_APPLY = _RANK_FN + _APPLY_FN + "return apply(KEYS, ARGV)\n"
APPLY_KEYS, APPLY_ARGS = 5, 8

# ``_APPLY`` followed, in the same call, by an after-write step of another layer (the live board's
# publish, ``scores.events.LiveScript``): a Lua ``local function live(IK, LK, LA, old_rank, new_rank,
# built)`` that sees the index keys (IK), its own keys (LK) and arguments (LA) and the ranks the
# apply computed; its result is the fifth value of the reply. KEYS: the 5 index keys, then LK.
# ARGV: the 8 apply arguments, then LA.
_APPLY_THEN = """
local ik, ia, lk, la = {}, {}, {}, {}
for i = 1, 5 do ik[i] = KEYS[i] end
for i = 6, #KEYS do lk[#lk + 1] = KEYS[i] end
for i = 1, 8 do ia[i] = ARGV[i] end
for i = 9, #ARGV do la[#la + 1] = ARGV[i] end
local r = apply(ik, ia)
r[5] = live(ik, lk, la, r[1], r[2], r[4])
return r
"""


@functools.cache
def apply_then(live_lua: str) -> str:
    """The apply script with ``live_lua`` (defining ``live``) run after it in the same call."""
    return _RANK_FN + _APPLY_FN + live_lua + _APPLY_THEN


# KEYS: z, m, s, d. ARGV: mode (offset / after), offset or cursor zscore, cursor member, count, the
# version the caller holds a copy of ('' for none). Returns {version} alone when the index still has
# that version (and is built), else {built, total, last_updated, start, better, better_distinct,
# version, member1, zscore1, meta1, ...}.
_PAGE = """
local version = redis.call('HGET', KEYS[3], 'v') or ''
if ARGV[5] ~= '' and version == ARGV[5] and redis.call('HEXISTS', KEYS[3], 'built') == 1 then
  return {version}
end
local start
if ARGV[1] == 'offset' then
  start = tonumber(ARGV[2])
else
  local zs, member = ARGV[2], ARGV[3]
  local there = redis.call('ZSCORE', KEYS[1], member)
  if there then
    start = redis.call('ZREVRANK', KEYS[1], member) + 1
  else
    redis.call('ZADD', KEYS[1], zs, member)
    start = redis.call('ZREVRANK', KEYS[1], member)
    redis.call('ZREM', KEYS[1], member)
  end
end
local items = redis.call('ZREVRANGE', KEYS[1], start, start + tonumber(ARGV[4]) - 1, 'WITHSCORES')
local better, better_distinct = start, 0
if #items > 0 then
  better = redis.call('ZCOUNT', KEYS[1], '(' .. items[2], '+inf')
  better_distinct = redis.call('ZCOUNT', KEYS[4], '(' .. items[2], '+inf')
end
local out = {redis.call('HEXISTS', KEYS[3], 'built'), redis.call('ZCARD', KEYS[1]),
             redis.call('HGET', KEYS[3], 'last_updated') or '', start, better, better_distinct, version}
for i = 1, #items, 2 do
  out[#out + 1] = items[i]
  out[#out + 1] = items[i + 1]
  out[#out + 1] = redis.call('HGET', KEYS[2], string.sub(items[i], 17)) or ''
end
return out
"""

_COUNTED_PAGE = with_counters(_PAGE)

# KEYS: z, m, s, d. ARGV: tie, inverted id 1, inverted id 2, ... Returns {built, total, then per id:
# rank, position, meta} with rank -1 for players not on the board.
_STANDINGS = (
    _RANK_FN
    + """
local out = {redis.call('HEXISTS', KEYS[3], 'built'), redis.call('ZCARD', KEYS[1])}
for i = 2, #ARGV do
  local cur = redis.call('HGET', KEYS[2], ARGV[i])
  local rank, position, meta = -1, -1, ''
  if cur then
    local _, member, _, hidden, zs = parse(cur)
    if member and member ~= '' then
      rank = rank_of(KEYS[1], KEYS[4], ARGV[1], zs, member, hidden == '0')
      position = position_of(KEYS[1], zs, member, hidden == '0')
      meta = cur
    end
  end
  out[#out + 1] = rank
  out[#out + 1] = position
  out[#out + 1] = meta
end
return out
"""
)


# KEYS: z, m, d, c, s. ARGV: inverted id, tie. Takes a player off the index entirely (no tombstone):
# an entry that no longer exists in PostgreSQL.
_FORGET = (
    _RANK_FN
    + """
local cur = redis.call('HGET', KEYS[2], ARGV[1])
if not cur then return 0 end
bump(KEYS[5])
local _, member, _, hidden, zs = parse(cur)
if member and member ~= '' and hidden == '0' then
  redis.call('ZREM', KEYS[1], member)
  if ARGV[2] == 'd' and redis.call('HINCRBY', KEYS[4], zs, -1) <= 0 then
    redis.call('HDEL', KEYS[4], zs)
    redis.call('ZREM', KEYS[3], zs)
  end
end
redis.call('HDEL', KEYS[2], ARGV[1])
return 1
"""
)


def _iso(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def _rank(value: int) -> int | None:
    return None if int(value) == NO_RANK else int(value)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


@dataclass(frozen=True)
class _Meta:
    version: int
    member: str
    last_updated: str
    hidden: bool
    zscore: int
    username: str


def _parse_meta(raw: bytes | str) -> _Meta | None:
    text = _text(raw)
    if not text:
        return None
    version, member, last_updated, hidden, zscore, username = text.split("|", 5)
    return _Meta(int(version), member, last_updated, hidden == "1", int(float(zscore or 0)), username)


class RedisIndex:
    """One (board, period)'s Redis index. Every method raises ``REDIS_ERRORS`` when Redis is down."""

    def __init__(self, client: redis.Redis, spec: BoardSpec, period_key: str) -> None:
        self.client = client
        self.spec = spec
        self.period_key = period_key
        self.keys = index_keys(spec.id, period_key)

    def _apply_args(self, entry: IndexEntry, *, mode: str) -> list[str | int]:
        return [
            inverted_id(entry.user_id),
            entry.version,
            self.spec.zscore(entry.score),
            member_for(user_id=entry.user_id, reached_at=entry.reached_at),
            _iso(entry.last_updated),
            entry.username,
            mode,
            tie_flag(self.spec),
        ]

    def apply_call(
        self, entry: IndexEntry, *, mode: str = "", then: tuple[str, Sequence[str], Sequence[str | int]] | None = None
    ) -> ScriptCall:
        """(script, keys, args) of ``apply`` (``mode``: add / hide / remove; by default add, or hide
        for a hidden entry), for ``scoreboard.redis.scripts_run``; read the reply with
        :meth:`change_from`. ``then``: (Lua defining ``live``, its keys, its arguments) run after the
        apply in the same call (``apply_then``)."""
        keys: list[str] = self.keys
        args = self._apply_args(entry, mode=mode or ("hide" if entry.hidden else "add"))
        if then is None:
            return registered_script(self.client, _APPLY), keys, args
        lua, then_keys, then_args = then
        return registered_script(self.client, apply_then(lua)), [*keys, *then_keys], [*args, *then_args]

    def _run_apply(self, entry: IndexEntry, mode: str) -> Any:
        script, keys, args = self.apply_call(entry, mode=mode)
        return script(keys=keys, args=args)

    @staticmethod
    def change_from(raw: Sequence[int]) -> RankChange:
        old, new, applied, built = raw[:4]
        then = int(raw[4]) if len(raw) > 4 else None
        return RankChange(_rank(old), _rank(new), bool(applied), bool(built), then)

    def apply(self, entry: IndexEntry) -> RankChange:
        """Write the player's absolute score unless a newer version is already indexed."""
        return self.change_from(self._run_apply(entry, "hide" if entry.hidden else "add"))

    def remove(self, entry: IndexEntry) -> RankChange:
        """Take the player off the board (banned, reversed to nothing), guarded by version like ``apply``."""
        return self.change_from(self._run_apply(entry, "remove"))

    def _page(self, args: list[str | int], counters: Any = None) -> IndexPage | None:
        # On Redis Cluster the counters and the board live in different slots: counted on their own.
        merge = counters is not None and not isinstance(self.client, redis.cluster.RedisCluster)
        chain = counters.counters() if merge else None
        if chain is None:
            raw = source_run(self.client, _PAGE, self.keys[:4], args)
        else:  # the request's rate-limit counters first, in the same call (with_counters)
            counter_keys, limits, expiry = chain
            counted = script_run(
                self.client,
                registered_script(self.client, _COUNTED_PAGE),
                [*counter_keys, *self.keys[:4]],
                [len(counter_keys), expiry, *limits, *args],
            )
            counters.settle(counted[0])  # 429 when over (the page was not read)
            raw = counted[1]
        if len(raw) == 1:
            return None  # still the version the caller holds
        built, total, last_updated = bool(raw[0]), int(raw[1]), _text(raw[2])
        start = RankStart(position=int(raw[3]), better=int(raw[4]), better_distinct=int(raw[5]))
        version = _text(raw[6])
        items = raw[7:]
        scored: list[tuple[str, int, _Meta | None]] = []
        for i in range(0, len(items), 3):
            scored.append((_text(items[i]), int(float(items[i + 1])), _parse_meta(items[i + 2])))
        scores = [self.spec.score_from_zscore(zs) for _, zs, _ in scored]
        ranks = rank_numbers(self.spec, scores, start)
        rows = [
            IndexRow(
                rank=rank,
                user_id=user_id_from_inverted(member[TIME_DIGITS:]),
                username=meta.username if meta else "",
                score=score,
                last_updated=meta.last_updated if meta else "",
                zscore=zs,
                member=member,
            )
            for (member, zs, meta), score, rank in zip(scored, scores, ranks, strict=True)
        ]
        return IndexPage(
            rows=rows,
            total_players=total,
            last_updated=last_updated or None,
            built=built,
            start=start.position,
            version=version,
        )

    def page(self, *, offset: int = 0, limit: int) -> IndexPage:
        page = self._page(["offset", offset, "", limit, ""])
        assert page is not None
        return page

    def page_unless(self, *, version: str, offset: int = 0, limit: int, counters: Any = None) -> IndexPage | None:
        """``page``, or None when the index is still at ``version`` (the caller's copy is current).

        ``counters`` (``scoreboard.ratelimit.PendingLimits``): the request's rate-limit hits, counted
        first in the same round trip; over a limit their 429 is raised and nothing is read."""
        return self._page(["offset", offset, "", limit, version], counters)

    def page_after(self, *, zscore: int, member: str, limit: int) -> IndexPage:
        """The ``limit`` rows that come after the point (zscore, member) in the board's order."""
        page = self._page(["after", zscore, member, limit, ""])
        assert page is not None
        return page

    def standings(self, user_ids: Sequence[str]) -> tuple[bool, int, dict[str, IndexStanding]]:
        """(built, visible players, {user id: standing}) for these players; absent ids are not ranked."""
        args: list[str | int] = [tie_flag(self.spec), *(inverted_id(u) for u in user_ids)]
        raw = source_run(self.client, _STANDINGS, self.keys[:4], args)
        built, total, items = bool(raw[0]), int(raw[1]), raw[2:]
        out: dict[str, IndexStanding] = {}
        for user_id, i in zip(user_ids, range(0, len(items), 3), strict=True):
            rank, position, meta = int(items[i]), int(items[i + 1]), _parse_meta(items[i + 2])
            if rank == NO_RANK or meta is None:
                continue
            out[user_id] = IndexStanding(
                user_id=user_id,
                rank=rank,
                position=position,
                score=self.spec.score_from_zscore(meta.zscore),
                last_updated=meta.last_updated,
                username=meta.username,
                hidden=meta.hidden,
                zscore=meta.zscore,
                member=meta.member,
            )
        return built, total, out

    def rank_of(self, user_id: str) -> tuple[int | None, int | None]:
        """(rank, score) of one player, or (None, None) when not on the board."""
        _, _, found = self.standings([user_id])
        standing = found.get(user_id)
        return (standing.rank, standing.score) if standing else (None, None)

    def forget(self, user_id: str) -> bool:
        """Remove a player whose entry no longer exists in PostgreSQL; True if they were indexed."""
        z, m, _s, d, c = self.keys
        script = registered_script(self.client, _FORGET)
        return bool(script(keys=[z, m, d, c, _s], args=[inverted_id(user_id), tie_flag(self.spec)]))

    def is_built(self) -> bool:
        return bool(self.client.hexists(self.keys[2], "built"))

    def mark_built(self) -> None:
        """Declare the index complete (a new, empty period, or after a rebuild)."""
        self.client.hset(self.keys[2], "built", "1")

    def replace_all(self, entries: Iterable[IndexEntry], *, batch: int = 1000) -> int:
        """Build the index into temporary keys, then swap them in atomically. Returns the count.

        The old keys are unlinked (freed in the background), never deleted in the foreground.
        """
        tmp = index_keys(self.spec.id, f"{self.period_key}:rebuild")
        tz, tm, ts, td, tc = tmp
        dense = self.spec.tie_policy == TIE_DENSE
        counts: dict[int, int] = {}
        count = 0
        last_updated = ""
        # Not queued: a cluster pipeline refuses multi-key commands (the keys share one slot, but
        # redis-py's cluster pipeline does not look).
        self.client.unlink(*tmp)
        pipe = self.client.pipeline(transaction=False)
        for entry in entries:
            member = member_for(user_id=entry.user_id, reached_at=entry.reached_at)
            updated = _iso(entry.last_updated)
            zs = self.spec.zscore(entry.score)
            if not entry.hidden:
                pipe.zadd(tz, {member: zs})
                if dense:
                    counts[zs] = counts.get(zs, 0) + 1
                last_updated = max(last_updated, updated)
            hidden = "1" if entry.hidden else "0"
            pipe.hset(
                tm, inverted_id(entry.user_id), f"{entry.version}|{member}|{updated}|{hidden}|{zs}|{entry.username}"
            )
            count += 1
            if count % batch == 0:
                pipe.execute()
        for zs, n in counts.items():
            pipe.zadd(td, {str(zs): zs})
            pipe.hset(tc, str(zs), n)
        if last_updated:
            pipe.hset(ts, "last_updated", last_updated)
        pipe.hset(ts, "v", str(time.time_ns() // 1000))  # a version no copy of the old index holds
        pipe.hset(ts, "built", "1")
        pipe.execute()
        exists = self.client.pipeline(transaction=False)
        for src in tmp:
            exists.exists(src)
        present = exists.execute()
        swap = self.client.pipeline(transaction=True)
        swap.unlink(*self.keys)
        for src, dst, there in zip(tmp, self.keys, present, strict=True):
            if there:
                swap.execute_command("RENAME", src, dst)  # a cluster pipeline refuses its rename()
        swap.execute()
        return count

    def versions(self) -> dict[str, int]:
        """user id -> indexed version, for drift checks (tombstones excluded)."""
        out: dict[str, int] = {}
        for inv, raw in self.client.hscan_iter(self.keys[1], count=1000):
            meta = _parse_meta(raw)
            if meta is not None and meta.member:
                out[user_id_from_inverted(_text(inv))] = meta.version
        return out

    def drop(self) -> None:
        """Remove this period's live index (after the period closed and its grace passed)."""
        self.client.unlink(*self.keys)


@functools.cache
def _index(client: redis.Redis, spec: BoardSpec, period_key: str) -> RedisIndex:
    return RedisIndex(client, spec, period_key)


def redis_index(spec: BoardSpec = GLOBAL_SPEC, period_key: str = ALL_TIME_KEY) -> RedisIndex | None:
    """The Redis index of one board's period, or None in the embedded default (no Redis configured)."""
    client = get_redis()
    return _index(client, spec, period_key) if client is not None else None
