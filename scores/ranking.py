"""The ranking rule and the Redis ranking index — the one place that knows boards and Redis keys.

Ordering (everywhere): score descending, then the earliest time the player reached that score,
then user id ascending. Ranks are 1-based and distinct.

Redis encodes the rule in a sorted set: the zset score is the player's score, and the member is
``<inverted reached-at µs, 16 digits><inverted user-id hex, 32 chars>``. Redis orders equal scores
by member bytes, and ZREVRANGE walks them in reverse, so an earlier time (bigger inverted value)
and then a smaller id (bigger inverted hex) come first. The member decodes back to the user id.

Beside the zset a hash maps ``inverted id -> "version|member|last_updated|username"``. Writes carry
the PostgreSQL ``score_version`` and a Lua script ignores any write that is not newer than the one
stored, so retries and out-of-order writes cannot corrupt the index (the DESIGN's "ZADD GT").
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Iterable
from dataclasses import dataclass

import redis

from scoreboard.redis import get_redis

MAX_REACHED_US = 10**16 - 1  # 16 digits of microseconds reach the year 2286
_HEX = "0123456789abcdef"
_INVERT_HEX = str.maketrans(_HEX, _HEX[::-1])
TIME_DIGITS = 16
NO_RANK = -1


@dataclass(frozen=True)
class Board:
    """Which board. Only the all-time global board exists today; windows and modes come later."""

    name: str

    def key(self, part: str) -> str:
        return f"sb:board:{self.name}:{part}"

    @property
    def zset_key(self) -> str:
        return self.key("z")

    @property
    def meta_key(self) -> str:
        return self.key("m")

    @property
    def stats_key(self) -> str:
        return self.key("s")


GLOBAL = Board("global")


def inverted_id(user_id: str) -> str:
    return user_id.replace("-", "").lower().translate(_INVERT_HEX)


def user_id_from_inverted(inv: str) -> str:
    h = inv.translate(_INVERT_HEX)
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def reached_us(reached_at: dt.datetime) -> int:
    return (
        int(reached_at.timestamp() * 1_000_000)
        if reached_at.tzinfo
        else int(reached_at.replace(tzinfo=dt.UTC).timestamp() * 1_000_000)
    )


def member_for(*, user_id: str, reached_at: dt.datetime) -> str:
    return f"{MAX_REACHED_US - reached_us(reached_at):0{TIME_DIGITS}d}{inverted_id(user_id)}"


def sort_key(*, score: int, reached_at: dt.datetime, user_id: str) -> tuple[int, int, str]:
    """The ordering rule as a Python sort key (ascending sort = best first)."""
    return (-score, reached_us(reached_at), user_id.replace("-", "").lower())


@dataclass(frozen=True)
class IndexEntry:
    user_id: str
    username: str
    score: int
    version: int
    reached_at: dt.datetime
    last_updated: dt.datetime


@dataclass(frozen=True)
class RankChange:
    old_rank: int | None
    new_rank: int | None
    applied: bool


@dataclass(frozen=True)
class IndexRow:
    user_id: str
    username: str
    score: int
    last_updated: str


@dataclass(frozen=True)
class IndexPage:
    rows: list[IndexRow]
    total_players: int
    last_updated: str | None


# KEYS: zset, meta, stats. ARGV: inverted id, version, score, member, last_updated, username, remove.
# Returns {old_rank, new_rank, applied} with -1 for "not ranked".
_APPLY = """
local cur = redis.call('HGET', KEYS[2], ARGV[1])
local old_rank = -1
if cur then
  local version, member = string.match(cur, '^(%d+)|([^|]*)|')
  if member and member ~= '' then
    old_rank = redis.call('ZREVRANK', KEYS[1], member) or -1
  end
  if tonumber(version) >= tonumber(ARGV[2]) then
    return {old_rank, old_rank, 0}
  end
  if member and member ~= '' then
    redis.call('ZREM', KEYS[1], member)
  end
end
if ARGV[7] == '1' then
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[2] .. '||' .. ARGV[5] .. '|' .. ARGV[6])
  return {old_rank, -1, 1}
end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[4])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2] .. '|' .. ARGV[4] .. '|' .. ARGV[5] .. '|' .. ARGV[6])
local last = redis.call('HGET', KEYS[3], 'last_updated')
if (not last) or last < ARGV[5] then
  redis.call('HSET', KEYS[3], 'last_updated', ARGV[5])
end
return {old_rank, redis.call('ZREVRANK', KEYS[1], ARGV[4]), 1}
"""

# KEYS: zset, meta, stats. ARGV: offset, limit. Returns {total, last_updated, m1, s1, meta1, ...}.
_PAGE = """
local items = redis.call('ZREVRANGE', KEYS[1], ARGV[1], ARGV[1] + ARGV[2] - 1, 'WITHSCORES')
local out = {redis.call('ZCARD', KEYS[1]), redis.call('HGET', KEYS[3], 'last_updated') or ''}
for i = 1, #items, 2 do
  out[#out + 1] = items[i]
  out[#out + 1] = items[i + 1]
  out[#out + 1] = redis.call('HGET', KEYS[2], string.sub(items[i], 17)) or ''
end
return out
"""

# KEYS: zset, meta. ARGV: inverted id. Returns {rank or -1, score or ''}.
_RANK = """
local cur = redis.call('HGET', KEYS[2], ARGV[1])
if not cur then return {-1, ''} end
local member = string.match(cur, '^%d+|([^|]*)|')
if (not member) or member == '' then return {-1, ''} end
local rank = redis.call('ZREVRANK', KEYS[1], member)
if not rank then return {-1, ''} end
return {rank, redis.call('ZSCORE', KEYS[1], member)}
"""


def _iso(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def _rank(value: int) -> int | None:
    return None if value == NO_RANK else int(value) + 1


class RedisIndex:
    """Operations on one board's Redis index. Every method raises ``REDIS_ERRORS`` when Redis is down."""

    def __init__(self, client: redis.Redis, board: Board = GLOBAL) -> None:
        self.client = client
        self.board = board
        self._apply = client.register_script(_APPLY)
        self._page = client.register_script(_PAGE)
        self._rank = client.register_script(_RANK)

    @property
    def _keys(self) -> list[str]:
        return [self.board.zset_key, self.board.meta_key, self.board.stats_key]

    def _apply_args(self, entry: IndexEntry, *, remove: bool = False) -> list[str | int]:
        return [
            inverted_id(entry.user_id),
            entry.version,
            entry.score,
            member_for(user_id=entry.user_id, reached_at=entry.reached_at),
            _iso(entry.last_updated),
            entry.username,
            "1" if remove else "0",
        ]

    def apply(self, entry: IndexEntry) -> RankChange:
        """Write the player's absolute score unless a newer version is already indexed."""
        old, new, applied = self._apply(keys=self._keys, args=self._apply_args(entry))
        return RankChange(_rank(old), _rank(new), bool(applied))

    def remove(self, entry: IndexEntry) -> RankChange:
        """Take the player off the board (banned), guarded by version like ``apply``."""
        old, new, applied = self._apply(keys=self._keys, args=self._apply_args(entry, remove=True))
        return RankChange(_rank(old), _rank(new), bool(applied))

    def page(self, *, offset: int = 0, limit: int) -> IndexPage:
        raw = self._page(keys=self._keys, args=[offset, limit])
        total, last_updated, items = int(raw[0]), raw[1].decode(), raw[2:]
        rows = []
        for i in range(0, len(items), 3):
            member, score, meta = items[i].decode(), items[i + 1], items[i + 2].decode()
            parts = meta.split("|", 3)
            rows.append(
                IndexRow(
                    user_id=user_id_from_inverted(member[TIME_DIGITS:]),
                    username=parts[3] if len(parts) == 4 else "",
                    score=int(float(score)),
                    last_updated=parts[2] if len(parts) == 4 else "",
                )
            )
        return IndexPage(rows=rows, total_players=total, last_updated=last_updated or None)

    def rank_of(self, user_id: str) -> tuple[int | None, int | None]:
        rank, score = self._rank(keys=self._keys[:2], args=[inverted_id(user_id)])
        return _rank(rank), (int(float(score)) if score not in (b"", "") else None)

    def replace_all(self, entries: Iterable[IndexEntry], *, batch: int = 1000) -> int:
        """Build the index into temporary keys, then swap them in atomically. Returns the count."""
        tmp = Board(f"{self.board.name}:rebuild")
        count = 0
        last_updated = ""
        pipe = self.client.pipeline(transaction=False)
        pipe.delete(tmp.zset_key, tmp.meta_key, tmp.stats_key)
        for entry in entries:
            member = member_for(user_id=entry.user_id, reached_at=entry.reached_at)
            updated = _iso(entry.last_updated)
            pipe.zadd(tmp.zset_key, {member: entry.score})
            pipe.hset(tmp.meta_key, inverted_id(entry.user_id), f"{entry.version}|{member}|{updated}|{entry.username}")
            last_updated = max(last_updated, updated)
            count += 1
            if count % batch == 0:
                pipe.execute()
        if last_updated:
            pipe.hset(tmp.stats_key, "last_updated", last_updated)
        pipe.execute()
        exists = self.client.pipeline(transaction=False)
        for src in (tmp.zset_key, tmp.meta_key, tmp.stats_key):
            exists.exists(src)
        present = exists.execute()
        swap = self.client.pipeline(transaction=True)
        swap.delete(self.board.zset_key, self.board.meta_key, self.board.stats_key)
        for (src, dst), there in zip(
            (
                (tmp.zset_key, self.board.zset_key),
                (tmp.meta_key, self.board.meta_key),
                (tmp.stats_key, self.board.stats_key),
            ),
            present,
            strict=True,
        ):
            if there:
                swap.rename(src, dst)
        swap.execute()
        return count

    def versions(self) -> dict[str, int]:
        """user id -> indexed version, for drift checks (tombstones included)."""
        out: dict[str, int] = {}
        for inv, meta in self.client.hscan_iter(self.board.meta_key, count=1000):
            version, member, _rest = meta.decode().split("|", 2)
            if member:
                out[user_id_from_inverted(inv.decode())] = int(version)
        return out


@functools.cache
def _index(client: redis.Redis, board: Board) -> RedisIndex:
    return RedisIndex(client, board)


def redis_index(board: Board = GLOBAL) -> RedisIndex | None:
    """The board's Redis index, or None in the embedded default (no Redis configured)."""
    client = get_redis()
    return _index(client, board) if client is not None else None
