"""Broadcast of the live board: called by the score service after a committed change.

A change is published only when the board's top 10 (order, scores or names) differs from the
last published one. The snapshot is read and serialised once per change; the seq is global and
monotonic across processes (Redis), and the frame travels through Redis pub/sub to every server
process, each of which fans it out to its own sockets (``realtime.hub``).

Concurrent publishers coalesce: whoever holds the board's short publish lock re-reads the board
until no change arrived while it was publishing, so the last frame sent always shows the
latest state, and a burst of updates costs one snapshot per round, not one per update.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import threading
import time
from dataclasses import dataclass

from django.conf import settings
from django.utils import timezone

from realtime import frames
from realtime.frames import Frame
from realtime.hub import board_channel, get_hub, player_channel
from scoreboard.redis import REDIS_ERRORS, get_redis, registered_script
from scores import events, selectors
from scores.boards import GLOBAL_ID, SORT_DESC, BoardSpec
from scores.ranking import board_tag, tie_flag

logger = logging.getLogger(__name__)

TOP_SIZE = settings.LEADERBOARD_DEFAULT_LIMIT
PUBLISH_LOCK_MS = 2000
# Bounds the coalescing loop if updates never stop arriving while one publisher holds the lock.
MAX_PUBLISH_ROUNDS = 50


def _key(board: BoardSpec, part: str) -> str:
    return f"{board_tag(board.id)}:rt:{part}"


def _seq_floor() -> int:
    """Where a fresh seq counter starts: microseconds since the epoch.

    Redis is derived and may be flushed (and an embedded process restarts); starting from the
    clock keeps seq increasing across both, so a client's Last-Event-ID never looks newer than
    the server's.
    """
    return time.time_ns() // 1000


@dataclass(frozen=True)
class Snapshot:
    rows: list[dict[str, object]]
    total_players: int
    last_updated: str | None
    period: str

    @property
    def fingerprint(self) -> str:
        """What makes the top 10 "change": order, ids, names and scores (not counts or times).

        The same digest as the index script's (``_LIVE``: SHA-1 of one line per row), so either
        publisher sees the other's top as its own.
        """
        text = "".join(f"{r['user_id']}\0{r['username']}\0{r['score']}\n" for r in self.rows)
        return hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()

    def tail(self, board: BoardSpec) -> bytes:
        return frames.board_tail(
            board=board.id,
            period=self.period,
            rows=self.rows,
            total_players=self.total_players,
            last_updated=self.last_updated,
        )


def _snapshot_read(board: BoardSpec) -> Snapshot:
    """The board's current period, top 10 (the period changes at its boundary with no write needed)."""
    period = board.period_at(timezone.now())
    page = selectors.board_page(spec=board, period=period, limit=TOP_SIZE)
    return Snapshot(
        rows=[row.as_dict() for row in page.rows],
        total_players=page.total_players,
        last_updated=page.last_updated,
        period=period.key,
    )


# ---------------------------------------------------------------------------------------------
# Publishing through Redis
# ---------------------------------------------------------------------------------------------
# KEYS: dirty, lock. ARGV: token, lock ms, take over "1"/"0". Marks the board dirty; returns the
# dirty counter when this caller now holds the publish lock, 0 when another publisher does (it will
# see the mark). Taking over sets the lock whoever holds it: after an outage the holder may be a
# publisher whose Redis calls timed out, whose lock would otherwise swallow the repair's publish.
_ENTER = """
local dirty = redis.call('INCR', KEYS[1])
if ARGV[3] == '1' then
  redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
  return dirty
end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then return dirty end
return 0
"""

# KEYS: fingerprint, seq, lock, dirty. ARGV: token, dirty seen, fingerprint, board, tail, seq floor,
# lock ms, the boards' channel prefix, frame head. Publishes when the fingerprint changed, then
# releases the lock unless the board was marked dirty meanwhile. Returns {seq published or 0, released 1/0}.
_PUBLISH = """
local seq = 0
if redis.call('GET', KEYS[1]) ~= ARGV[3] then
  if redis.call('EXISTS', KEYS[2]) == 0 then redis.call('SET', KEYS[2], ARGV[6]) end
  redis.call('INCR', KEYS[2])
  -- as a string: Lua 5.1 would print a 16-digit number in exponent notation
  seq = redis.call('GET', KEYS[2])
  redis.call('SET', KEYS[1], ARGV[3])
  redis.call('PUBLISH', ARGV[8] .. ARGV[4], seq .. '\\n' .. ARGV[9] .. seq .. ARGV[5])
end
if redis.call('GET', KEYS[4]) == ARGV[2] then
  if redis.call('GET', KEYS[3]) == ARGV[1] then redis.call('DEL', KEYS[3]) end
  return {seq, 1}
end
redis.call('PEXPIRE', KEYS[3], ARGV[7])
return {seq, 0}
"""


# ---------------------------------------------------------------------------------------------
# Publishing inside the index write (one Redis round trip per update, scores.events.LiveScript)
# ---------------------------------------------------------------------------------------------
# IK: the board's index keys z, m, s, d, c (scores.ranking). LK: top (fingerprint), seq, dirty. LA: 1
# board, 2 period, 3 user id, 4 the player's score, 5 hidden "1"/"0", 6 top size, 7 tie (f/c/d), 8 low
# wins "1"/"0", 9 seq floor, 10 published_at, 11 the boards' channel prefix and 12 the players' (a
# board's or a player's own channel is the prefix plus its id), 13 frame head.
# Publishes the player's rank_update; then, when the player was or is in the top (or either rank is
# unknown) and is not hidden, reads the top from the index and publishes the leaderboard_update if its
# fingerprint changed (the frame rendered here is the one _snapshot_read + Snapshot.tail render).
# Marks the board dirty, so a publisher holding the lock (_RedisPublisher) re-reads. Returns the seq
# published, 0 for none, -1 when the index is not built: nothing is published, the caller publishes
# the usual way (after its rebuild).
_LIVE = r"""
local UNINVERT = {}
do
  local h = '0123456789abcdef'
  for i = 1, 16 do UNINVERT[string.sub(h, i, i)] = string.sub(h, 17 - i, 17 - i) end
end
local function user_id_of(inv)
  local h = string.gsub(inv, '.', UNINVERT)
  return string.sub(h, 1, 8) .. '-' .. string.sub(h, 9, 12) .. '-' .. string.sub(h, 13, 16) .. '-' ..
    string.sub(h, 17, 20) .. '-' .. string.sub(h, 21)
end
local function rank_json(r)
  if r == -1 then return 'null' end
  return tostring(r)
end
local function score_of(zs, low)
  if low ~= '1' or zs == '0' then return zs end
  if string.sub(zs, 1, 1) == '-' then return string.sub(zs, 2) end
  return '-' .. zs
end
local function live(IK, LK, LA, old_rank, new_rank, built)
  if built == 0 then return -1 end  -- the index is being rebuilt: the usual publisher sends all of it
  local board, period = cjson.encode(LA[1]), cjson.encode(LA[2])
  redis.call('PUBLISH', LA[12] .. LA[3], '{"type":"rank_update","board":' .. board .. ',"period":' .. period ..
    ',"user_id":"' .. LA[3] .. '","rank":' .. rank_json(new_rank) .. ',"old_rank":' .. rank_json(old_rank) ..
    ',"score":' .. LA[4] .. ',"published_at":' .. LA[10] .. '}')
  local n = tonumber(LA[6])
  if LA[5] == '1' or (old_rank > n and new_rank > n) then return 0 end
  redis.call('INCR', LK[3])
  local items = redis.call('ZREVRANGE', IK[1], 0, n - 1, 'WITHSCORES')
  local rows, lines = {}, {}
  local rank, previous = 0, nil
  for i = 1, #items, 2 do
    local position = (i + 1) / 2
    local inv = string.sub(items[i], 17)
    local username, updated, zs = '', '', items[i + 1]
    local meta = redis.call('HGET', IK[2], inv)
    if meta then
      local _, _, lu, _, z, name = parse(meta)
      if lu then username, updated, zs = name, lu, z end
    end
    if LA[7] == 'f' or position == 1 then rank = position
    elseif zs ~= previous then
      if LA[7] == 'c' then rank = position else rank = rank + 1 end
    end
    previous = zs
    local user_id, score = user_id_of(inv), score_of(zs, LA[8])
    rows[#rows + 1] = '{"rank":' .. rank .. ',"user_id":"' .. user_id .. '","username":' .. cjson.encode(username) ..
      ',"score":' .. score .. ',"last_updated":' .. cjson.encode(updated) .. '}'
    lines[#lines + 1] = user_id .. '\0' .. username .. '\0' .. score .. '\n'
  end
  local fingerprint = redis.sha1hex(table.concat(lines))
  if redis.call('GET', LK[1]) == fingerprint then return 0 end
  if redis.call('EXISTS', LK[2]) == 0 then redis.call('SET', LK[2], LA[9]) end
  redis.call('INCR', LK[2])
  local seq = redis.call('GET', LK[2])  -- a string: Lua 5.1 prints a 16-digit number in exponent form
  redis.call('SET', LK[1], fingerprint)
  local last = redis.call('HGET', IK[3], 'last_updated')
  local tail = ',"board":' .. board .. ',"period":' .. period .. ',"published_at":' .. LA[10] ..
    ',"leaderboard":[' .. table.concat(rows, ',') .. '],"total_players":' .. redis.call('ZCARD', IK[1]) ..
    ',"last_updated":' .. ((last and last ~= '') and cjson.encode(last) or 'null') .. '}'
  redis.call('PUBLISH', LA[11] .. LA[1], seq .. '\n' .. LA[13] .. seq .. tail)
  return 1
end
"""


class _LiveScript:
    """``scores.events.LiveScript``: the live publish inside each board's index write."""

    lua = _LIVE

    def keys(self, board: BoardSpec) -> list[str]:
        return [_key(board, "top"), _key(board, "seq"), _key(board, "dirty")]

    def args(self, *, board: BoardSpec, period: str, user_id: str, score: int, hidden: bool) -> list[str | int]:
        return [
            board.id,
            period,
            user_id,
            score,
            "1" if hidden else "0",
            TOP_SIZE,
            tie_flag(board),
            "0" if board.sort == SORT_DESC else "1",
            _seq_floor(),
            repr(frames.published_at_ms()),
            board_channel().decode(),
            player_channel().decode(),
            frames.SEQ_HEAD.decode(),
        ]


live_script = _LiveScript()


class _RedisPublisher:
    def publish_board(self, board: BoardSpec, *, take_over: bool = False) -> int:
        """Publish the board if its top changed; returns the last seq published (0 for none).

        ``take_over``: publish even if another publisher holds the lock (after an outage that
        publisher may be dead: its lock would outlive the repair that needs publishing). A live
        holder sees the dirty mark and publishes again, so the newest snapshot is still the last.
        """
        client = get_redis()
        assert client is not None
        enter, publish = registered_script(client, _ENTER), registered_script(client, _PUBLISH)
        token = secrets.token_hex(8)
        dirty = enter(
            keys=[_key(board, "dirty"), _key(board, "lock")],
            args=[token, PUBLISH_LOCK_MS, "1" if take_over else "0"],
        )
        published = 0
        for _ in range(MAX_PUBLISH_ROUNDS):
            if not dirty:
                return published  # the lock holder will publish our change
            snapshot = _snapshot_read(board)
            seq, released = publish(
                keys=[_key(board, "top"), _key(board, "seq"), _key(board, "lock"), _key(board, "dirty")],
                args=[
                    token,
                    dirty,
                    snapshot.fingerprint,
                    board.id,
                    snapshot.tail(board),
                    _seq_floor(),
                    PUBLISH_LOCK_MS,
                    board_channel(),
                    frames.SEQ_HEAD,
                ],
            )
            published = int(seq) or published
            if released:
                return published
            dirty = int(client.get(_key(board, "dirty")) or 0)
        client.delete(_key(board, "lock"))
        return published

    def publish_player(self, user_id: str, frame: Frame) -> None:
        client = get_redis()
        assert client is not None
        client.publish(player_channel(user_id), frame.data)

    def current_seq(self, board: BoardSpec) -> int:
        client = get_redis()
        assert client is not None
        return int(client.get(_key(board, "seq")) or 0)


# ---------------------------------------------------------------------------------------------
# Publishing in-process (embedded default: one process, no Redis)
# ---------------------------------------------------------------------------------------------
class _LocalPublisher:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._fingerprints: dict[str, str] = {}
        self._seq: dict[str, int] = {}

    def publish_board(self, board: BoardSpec, *, take_over: bool = False) -> int:
        with self._lock:
            snapshot = _snapshot_read(board)
            if self._fingerprints.get(board.id) == snapshot.fingerprint:
                return 0
            self._fingerprints[board.id] = snapshot.fingerprint
            seq = max(self._seq.get(board.id, 0), _seq_floor()) + 1
            self._seq[board.id] = seq
            frame = frames.board_frame(seq=seq, tail=snapshot.tail(board))
        get_hub().deliver_threadsafe(board=board.id, frame=frame)
        return seq

    def publish_player(self, user_id: str, frame: Frame) -> None:
        get_hub().deliver_threadsafe(user_id=user_id, frame=frame)

    def current_seq(self, board: BoardSpec) -> int:
        return self._seq.get(board.id, 0)


_redis_publisher = _RedisPublisher()
_local_publisher = _LocalPublisher()


def _publisher() -> _RedisPublisher | _LocalPublisher:
    return _redis_publisher if settings.REDIS_URL else _local_publisher


def _in_top(rank: int | None) -> bool:
    return rank is not None and rank <= TOP_SIZE


# ---------------------------------------------------------------------------------------------
# Entry points (score events, after the commit and the index update; see scores.events)
# ---------------------------------------------------------------------------------------------
def score_applied(event: events.ScoreApplied) -> None:
    """A committed change on one board: the player's own rank_update, and the board if its top changed.

    Never raises: the score is already committed, and a lost broadcast is repaired by the next one.
    A quarantined player still gets their own update (they must not be able to tell), but cannot
    change what the public sees.
    """
    if event.published:
        return  # published by the index write itself (_LIVE), in the same Redis call
    publisher = _publisher()
    board, old_rank, new_rank = event.board, event.old_rank, event.new_rank
    try:
        publisher.publish_player(
            event.user_id,
            frames.rank_frame(
                user_id=event.user_id,
                board=board.id,
                period=event.period,
                rank=new_rank,
                old_rank=old_rank,
                score=event.score,
            ),
        )
        # A player outside the top before and after cannot change it (ranks None = unknown: check).
        if event.hidden:
            return
        if _in_top(old_rank) or _in_top(new_rank) or old_rank is None or new_rank is None:
            publisher.publish_board(board)
    except REDIS_ERRORS:
        logger.warning("realtime: Redis unavailable; update for %s not broadcast", event.user_id)


def player_signed_out(*, user_id: str) -> None:
    """The player's sessions were revoked (ban, sign out everywhere): every process closes their
    open sockets (through the player channel). Never raises; without Redis the sockets stay open
    until they re-authenticate or their token expires (a new handshake is refused either way)."""
    try:
        _publisher().publish_player(user_id, frames.revoked_frame())
    except REDIS_ERRORS:
        logger.warning("realtime: Redis unavailable; open sockets of %s not closed", user_id)


def board_corrected(event: events.BoardCorrected) -> None:
    """A moderator correction (reversal, ban, quarantine): push the board if its top changed."""
    if event.period != event.board.period_at(timezone.now()).key:
        return  # an archive: its live board is not on screen
    try:
        _publisher().publish_board(event.board, take_over=event.repair)
    except REDIS_ERRORS:
        logger.warning("realtime: Redis unavailable; correction on %s not broadcast", event.board.id)


def current_seq(*, board: BoardSpec) -> int:
    """The seq of the last published change of ``board`` (0 when unknown)."""
    try:
        return _publisher().current_seq(board)
    except REDIS_ERRORS:
        return 0


def board_snapshot(*, board: BoardSpec) -> Frame:
    """The current board as a leaderboard_update frame (sent on connect), with the current seq.

    The seq is read first: the rows are then at least as new as the seq says, so a frame
    published meanwhile (a higher seq) still reaches the socket instead of being taken as old.
    """
    seq = current_seq(board=board)
    return frames.board_frame(seq=seq, tail=_snapshot_read(board).tail(board))


def board_snapshot_by_name(*, board: str) -> Frame:
    spec = board_by_name(board)
    if spec is None:
        raise LookupError(board)
    return board_snapshot(board=spec)


def board_by_name(name: str) -> BoardSpec | None:
    """An active board by id, or None."""
    spec = selectors.board_get(name)
    return spec if spec is not None and spec.is_active else None


def default_board() -> BoardSpec:
    spec = selectors.board_get(GLOBAL_ID)
    assert spec is not None
    return spec
