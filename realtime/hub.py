"""The per-process fan-out: a registry of this process's live sockets and one Redis subscription.

Why not ``group_send``: with channels' layers every message is copied into each consumer's
channel and each consumer pays a task wake-up and a dispatch per message (see the measurements in
``realtime/bench_fanout.py``). Here a published frame arrives once per *process* (one Redis
pub/sub subscription, started lazily in the ASGI process) and is handed to each local socket's
mailbox. A WebSocket that keeps up gets the frame written right there, in the fan-out loop (no
task per socket wakes up); one whose buffer is full holds at most one pending snapshot for a task
of its own: a slow client skips intermediate snapshots and resynchronises from the newest one, and
it never delays the others.

In the embedded default (no Redis) the score update runs in a worker thread of the same ASGI
process and hands the frame over with ``loop.call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import logging
import os
import threading
import time
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable, Coroutine, Generator
from typing import Any

import redis
import redis.asyncio as aioredis
from django.conf import settings
from prometheus_client import Counter
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff

from realtime.frames import LEADERBOARD_UPDATE, SESSION_REVOKED, Frame, player_frame
from realtime.wire import RawWrite
from scoreboard import redis as scoreboard_redis
from scoreboard.redis import is_cluster_url, pubsub_url

logger = logging.getLogger(__name__)

# Redis pub/sub channels, one per board (BOARD_CHANNEL + board id: "<seq>\n<json>") and one per
# player (PLAYER_CHANNEL + user id: rank updates, revocation, "<json>"). A process subscribes to a
# board's or a player's channel only while it holds a socket watching that board or of that player:
# a publish costs the processes with no such socket nothing (on one channel for everything, each
# process paid about 0.2 ms of CPU per message to read and drop it). HUB_CHANNEL carries nothing: it
# is subscribed last on every (re)connect, and its confirmation says the whole SUBSCRIBE is done.
# Pub/sub ignores the database number, so the channel names carry it: two deployments (or test
# runs) on different databases of one Redis server must not hear each other.
BOARD_CHANNEL = "sb:rt:{db}:board:"
PLAYER_CHANNEL = "sb:rt:{db}:player:"
HUB_CHANNEL = "sb:rt:{db}:hub"


@functools.cache
def _channels(url: str) -> tuple[bytes, bytes, bytes]:
    # A cluster has only database 0 (and its PUBLISH reaches every node: any node can be subscribed to).
    db = 0 if is_cluster_url(url) else redis.Redis.from_url(url).connection_pool.connection_kwargs.get("db", 0)
    return tuple(name.format(db=db).encode() for name in (BOARD_CHANNEL, PLAYER_CHANNEL, HUB_CHANNEL))  # type: ignore[return-value]


def board_channel(board: str = "") -> bytes:
    """The channel of ``board``'s frames (no board: the prefix every board's channel starts with)."""
    return _channels(settings.REDIS_URL)[0] + board.encode()


def hub_channel() -> bytes:
    return _channels(settings.REDIS_URL)[2]


def player_channel(user_id: str = "") -> bytes:
    """The channel of ``user_id``'s own frames (no id: the prefix every player's channel starts with)."""
    return _channels(settings.REDIS_URL)[1] + user_id.encode()


# A player's own rank updates kept for a slow socket before the oldest are dropped.
PLAYER_BACKLOG = 16
HUB_CONNECT_TIMEOUT_SECONDS = 2.0
CLOSE_SESSION_REVOKED = 4401  # as realtime/consumers.py CLOSE_UNAUTHORIZED
# Close tasks of revoked sockets, and fan-out tasks (kept referenced until they finish).
_closing: set[asyncio.Task[None]] = set()
_fanning_out: set[asyncio.Task[None]] = set()
SUBSCRIBE_WAIT_SECONDS = 5.0
RECONNECT_MIN_SECONDS = 0.2
RECONNECT_MAX_SECONDS = 5.0
# With no traffic for this long the subscription pings Redis, so a dead link or a hung server is
# noticed within IDLE_PING_SECONDS + PONG_TIMEOUT_SECONDS (a PING is a few bytes a process).
IDLE_PING_SECONDS = 5.0
# A PING unanswered for this long means Redis hangs (SIGSTOP, a stuck host): the subscription is
# dropped and made again once the breaker lets it. Generous beside REDIS_SOCKET_TIMEOUT, because a
# busy event loop (a fan-out to thousands of sockets) may itself delay reading the answer.
PONG_TIMEOUT_SECONDS = 2.0
# At most this many pub/sub messages are taken together before a fan-out (see ``Hub._on_messages``).
DRAIN_MAX = 1000
# A socket waits at most this long for its board's (and player's) channel to be confirmed before it
# reads its snapshot, so that no frame published after that read is missed (bounded: a slow Redis
# must not hold the connect).
CHANNEL_SUBSCRIBE_WAIT_SECONDS = 1.0
# The saturation back-off (Hub._fan_out_now): a fan-out that took at least BACKOFF_MIN_SECONDS of wall
# time, more than REALTIME_SATURATION_BACKOFF_RATIO times its CPU time, holds its board back until the
# process's fan-outs have used at most REALTIME_SATURATION_CPU_SHARE of a core (or, with the share at 0,
# for REALTIME_SATURATION_BACKOFF_HOLD times that wall time), at most BACKOFF_MAX_SECONDS.
BACKOFF_MIN_SECONDS = 0.005
BACKOFF_MAX_SECONDS = 0.5
# Names the subscription in CLIENT LIST (operators, and the reconnect test, can find it).
HUB_CLIENT_NAME = "sb-realtime-hub"

# The ASGI send of a WebSocket (an ``async def``: calling it gives a coroutine).
Send = Callable[[dict[str, Any]], Awaitable[None]]


BOARD_FRAMES = Counter("scoreboard_realtime_board_frames", "Board snapshots fanned out by this process.")
SNAPSHOTS_REPLACED = Counter(
    "scoreboard_realtime_snapshots_replaced",
    "Board snapshots this process never fanned out because a newer one had arrived before it started.",
)
SUBSCRIBE_ATTEMPTS = Counter(
    "scoreboard_realtime_subscribe_attempts",
    "Connections this process's hub opened for its Redis subscription (a rise means Redis trouble).",
)
FANOUT_BACKOFFS = Counter(
    "scoreboard_realtime_fanout_backoffs",
    "Board fan-outs after which this process held the board back because it was kept off the CPU (a saturated box).",
)
FRAMES_SKIPPED = Counter(
    "scoreboard_realtime_frames_skipped",
    "Frames a slow socket never received because a newer snapshot replaced them (or its backlog was full).",
)


class Mailbox:
    """One socket's pending frames: the newest board snapshot and a short backlog of its own updates.

    Two ways out. A reader that pulls (SSE) awaits ``take()``. A WebSocket pushes: once it called
    ``start_push(send)``, a frame offered while nothing is pending is written there and then by the
    fan-out loop (no task wakes up per socket per frame); only when a write cannot finish at once
    (the client's buffer is full: a slow client) does a task finish it, and that task then sends what
    piled up meanwhile, skipping to the newest snapshot. The others never wait for it.

    Only touched from the event loop thread.
    """

    __slots__ = (
        "_direct",
        "_raw",
        "_send",
        "_sending",
        "_snapshot",
        "_stalled",
        "_wake",
        "board",
        "last_seq",
        "skipped",
        "user_id",
    )

    def __init__(self, board: str) -> None:
        self.board = board
        self.user_id: str | None = None
        self.last_seq = 0
        self.skipped = 0
        self._snapshot: Frame | None = None
        # Both made on first use: most sockets never hold a player update, and only readers that
        # pull wait for a wake-up (about 1.6 KB a socket otherwise).
        self._direct: deque[Frame] | None = None
        self._wake: asyncio.Event | None = None
        self._send: Send | None = None
        # Writes a pre-framed frame straight to the transport when the server allows it (realtime/wire.py).
        self._raw: RawWrite | None = None
        # The task finishing a write that could not complete at once (that write: ``_stalled``, until
        # the task took it over); None while the socket is idle.
        self._sending: asyncio.Task[None] | None = None
        self._stalled: _Resumed | None = None

    def offer(self, frame: Frame) -> None:
        if frame.kind == LEADERBOARD_UPDATE:
            if frame.seq <= self.last_seq:
                return
            if self._send is not None and self._sending is None:  # an idle pusher holds nothing pending
                self.last_seq = frame.seq
                if self._raw is None or not self._raw(frame.ws_wire):
                    self._push(self._send, frame)
                return
            if self._snapshot is not None:
                self.skipped += 1  # the client was still busy: it jumps straight to the newer snapshot
                FRAMES_SKIPPED.inc()
            self._snapshot = frame
        else:
            if self._send is not None and self._sending is None:
                if self._raw is None or not self._raw(frame.ws_wire):
                    self._push(self._send, frame)
                return
            if self._direct is None:
                self._direct = deque(maxlen=PLAYER_BACKLOG)
            elif len(self._direct) == self._direct.maxlen:
                self.skipped += 1
                FRAMES_SKIPPED.inc()
            self._direct.append(frame)
        if self._send is None and self._wake is not None:
            self._wake.set()

    def drop_snapshot(self) -> None:
        """Forget a pending snapshot (of the board the socket just left)."""
        self._snapshot = None

    async def take(self) -> list[Frame]:
        """Wait for frames; returns the player's own updates, then the newest snapshot."""
        while not self._holds_frames():
            if self._wake is None:
                self._wake = asyncio.Event()
            await self._wake.wait()
            self._wake.clear()
        return self._pending()

    def _holds_frames(self) -> bool:
        return bool(self._direct) or self._snapshot is not None

    def _pending(self) -> list[Frame]:
        frames: list[Frame] = []
        if self._direct:
            frames.extend(self._direct)
            self._direct.clear()
        snapshot, self._snapshot = self._snapshot, None
        if snapshot is not None and snapshot.seq > self.last_seq:
            self.last_seq = snapshot.seq
            frames.append(snapshot)
        return frames

    # -- push mode (WebSocket) --------------------------------------------------------------
    def start_push(self, send: Send, raw: RawWrite | None = None) -> None:
        """From now on write frames with ``send`` (the ASGI send); what arrived before goes first.

        ``raw`` (realtime/wire.py), when given, writes pre-framed frames while it can; a frame it
        declines takes ``send``.
        """
        self._send = send
        self._raw = raw
        if self._sending is None and self._holds_frames():
            self._sending = asyncio.get_running_loop().create_task(self._drain(None))

    def revoke(self, frame: Frame) -> None:
        """The player's sessions were revoked: write ``frame`` (the error), then close the socket."""
        send = self._send
        self.stop_push()
        if send is None:
            self.offer(frame)  # a pulling reader (SSE) gets the error as its next event
            return

        async def close() -> None:
            with contextlib.suppress(Exception):  # the socket may be gone already
                await send(frame.ws_message)
                await send({"type": "websocket.close", "code": CLOSE_SESSION_REVOKED})

        task = asyncio.get_running_loop().create_task(close())
        _closing.add(task)
        task.add_done_callback(_closing.discard)

    def stop_push(self) -> None:
        """The socket is gone: no more writes, and a write still waiting is abandoned."""
        self._send = None
        self._raw = None
        if self._sending is not None:
            self._sending.cancel()
            self._sending = None
        if self._stalled is not None:
            self._stalled.abandon()  # its task was cancelled before it could take the write over
            self._stalled = None

    def _push(self, send: Send, frame: Frame) -> None:
        # Run the ASGI send's coroutine right here: writing to a socket whose buffer has room never
        # suspends, so it completes within this call.
        write = send(frame.ws_message)
        if not inspect.iscoroutine(write):  # some other awaitable: nothing to run by hand
            self._sending = asyncio.get_running_loop().create_task(self._drain(write))
            return
        try:
            waiting_on = write.send(None)
        except StopIteration:
            return
        except (Exception, asyncio.CancelledError):  # a send (wrapper) that raised, or cancelled itself
            self._failed()
            return
        # The write is waiting (the client's buffer is full): a task takes it over from here.
        self._stalled = _Resumed(write, waiting_on)
        self._sending = asyncio.get_running_loop().create_task(self._drain(self._stalled))

    async def _drain(self, started: Awaitable[None] | None) -> None:
        try:
            if started is not None:
                await started
            while self._send is not None and (frames := self._pending()):
                for frame in frames:
                    await self._send(frame.ws_message)
        except asyncio.CancelledError:
            raise
        except Exception:
            self._failed()
        finally:
            if self._sending is asyncio.current_task():
                self._sending = None
                self._stalled = None

    def _failed(self) -> None:
        # The client went away mid-send: the consumer's disconnect() detaches it.
        logger.debug("realtime: socket write failed", exc_info=True)
        self._send = None
        self._raw = None


class _Resumed:
    """Awaiting this continues ``coro``, a coroutine already started by hand and suspended on ``waiting_on``.

    The awaiting task sees ``waiting_on`` as if the coroutine had yielded it to the task itself: it
    waits for it, then resumes the coroutine (or throws into it when the task is cancelled).
    """

    __slots__ = ("coro", "started", "waiting_on")

    def __init__(self, coro: Coroutine[Any, Any, None], waiting_on: Any) -> None:
        self.coro = coro
        self.waiting_on = waiting_on
        self.started = False

    def abandon(self) -> None:
        """Cancel the write if no task has started awaiting it (as a cancelled task would have)."""
        if self.started:
            return
        self.started = True
        if isinstance(self.waiting_on, asyncio.Future):
            self.waiting_on.cancel()
        with contextlib.suppress(Exception, asyncio.CancelledError):
            self.coro.throw(asyncio.CancelledError())
        self.coro.close()

    def __await__(self) -> Generator[Any, Any, None]:
        self.started = True
        coro, waiting_on = self.coro, self.waiting_on
        while True:
            try:
                sent = yield waiting_on
            except BaseException as exc:  # a cancellation (or any throw) goes on to the coroutine
                try:
                    waiting_on = coro.throw(exc)
                except StopIteration:
                    return
            else:
                try:
                    waiting_on = coro.send(sent)
                except StopIteration:
                    return


class Hub:
    """This process's sockets by board and by player, fed from Redis or, embedded, in-process."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._boards: dict[str, set[Mailbox]] = defaultdict(set)
        self._players: dict[str, set[Mailbox]] = defaultdict(set)
        self._listener: asyncio.Task[None] | None = None
        self._subscribed: asyncio.Event | None = None
        self._subscribe_deadline = 0.0
        # True while the Redis subscription is confirmed and answering (health, tests).
        self.subscription_alive = False
        # Connect snapshots: the batch of sockets waiting for the next read, and the boards being read.
        self._snapshot_next: dict[str, asyncio.Future[Frame]] = {}
        self._snapshot_reading: dict[str, asyncio.Task[None]] = {}
        # The boards' and players' channels on the live subscription: the pub/sub while it is up, the
        # channels whose SUBSCRIBE was sent on it, those Redis confirmed, and sockets waiting for one.
        self._pubsub: Any = None
        self._sent: set[bytes] = set()
        self._confirmed: set[bytes] = set()
        self._waiters: dict[bytes, list[asyncio.Future[None]]] = defaultdict(list)
        self._reconciling: asyncio.Task[None] | None = None
        # Board frame pacing (REALTIME_BOARD_FRAME_INTERVAL_MS, REALTIME_SATURATION_BACKOFF): the loop
        # time before which a board is not fanned out again, and the newest frame of a board waiting for it.
        self._next_slot: dict[str, float] = {}
        self._paced: dict[str, Frame] = {}
        # The back-off's CPU clock (REALTIME_SATURATION_CPU_SHARE): the loop time by which this process's
        # saturated fan-outs, of every board, will have used no more than the share of a core.
        self._cpu_clock = 0.0

    # -- registry (event loop thread) -------------------------------------------------------
    async def attach(self, box: Mailbox) -> None:
        """Register a socket; the first one of the process starts the Redis subscription.

        It then waits (briefly) until Redis confirmed its board's channel (and its player's), so that
        the snapshot it reads next cannot miss a frame published after that read.
        """
        await self._ensure_running()
        self._enter(self._boards, box.board, box)
        if box.user_id:
            self._enter(self._players, box.user_id, box)
            await self.player_confirmed(box.user_id)
        await self.board_confirmed(box.board)

    def identify(self, box: Mailbox, user_id: str | None) -> None:
        """The socket authenticated (or re-authenticated) as ``user_id``."""
        if box.user_id:
            self._leave(self._players, box.user_id, box)
        box.user_id = user_id
        if user_id and box in self._boards.get(box.board, ()):
            self._enter(self._players, user_id, box)

    def move(self, box: Mailbox, board: str) -> None:
        """The socket subscribed to another board: from now on it gets that board's frames only
        (await ``board_confirmed`` before reading that board's snapshot)."""
        self._leave(self._boards, box.board, box)
        box.board = board
        box.drop_snapshot()
        self._enter(self._boards, board, box)

    def detach(self, box: Mailbox) -> None:
        self._leave(self._boards, box.board, box)
        if box.user_id:
            self._leave(self._players, box.user_id, box)

    # -- the boards' and players' channels (event loop thread) --------------------------------
    def _enter(self, index: dict[str, set[Mailbox]], key: str, box: Mailbox) -> None:
        """``box`` joins ``index[key]`` (a board's or a player's sockets); the first one needs a channel."""
        first = key not in index
        index[key].add(box)
        if first:
            self._channels_changed()

    def _leave(self, index: dict[str, set[Mailbox]], key: str, box: Mailbox) -> None:
        """``box`` leaves ``index[key]``; after the last one the channel goes."""
        self._discard(index, key, box)
        if key not in index:
            self._channels_changed()

    def _wanted(self) -> set[bytes]:
        return {board_channel(b) for b in self._boards} | {player_channel(u) for u in self._players}

    def _channels_changed(self) -> None:
        """Bring the subscription's channels in line with the boards watched and the players here.

        One task at a time sends what changed meanwhile, in one SUBSCRIBE and one UNSUBSCRIBE: a
        storm of (re)connects costs a few commands, not one per socket.
        """
        if self._pubsub is None or (self._reconciling is not None and not self._reconciling.done()):
            return  # the listener subscribes everyone on (re)connect; the running task sees this change
        self._reconciling = asyncio.get_running_loop().create_task(
            self._reconcile_channels(), name="realtime-hub-channels"
        )

    async def _reconcile_channels(self) -> None:
        while (pubsub := self._pubsub) is not None:
            wanted = self._wanted()
            add, drop = wanted - self._sent, self._sent - wanted
            if not add and not drop:
                return
            self._sent = wanted
            self._confirmed -= drop
            try:
                if add:
                    await pubsub.subscribe(*add)
                if drop:
                    await pubsub.unsubscribe(*drop)
            except Exception:
                # The listener notices the broken link too, and subscribes everyone again.
                logger.warning("realtime: could not update the subscription's channels", exc_info=True)
                return

    async def board_confirmed(self, board: str) -> None:
        """Wait (at most CHANNEL_SUBSCRIBE_WAIT_SECONDS) until Redis confirmed ``board``'s channel."""
        if self._pubsub is not None and board in self._boards:  # (embedded: no Redis, no channel names)
            await self._confirmed_wait(board_channel(board))

    async def player_confirmed(self, user_id: str) -> None:
        """Wait (at most CHANNEL_SUBSCRIBE_WAIT_SECONDS) until Redis confirmed ``user_id``'s channel."""
        if self._pubsub is not None and user_id in self._players:  # (embedded: no Redis, no channel names)
            await self._confirmed_wait(player_channel(user_id))

    async def _confirmed_wait(self, channel: bytes) -> None:
        if self._pubsub is None or channel in self._confirmed:
            return  # no live subscription (the listener subscribes everyone when it is back), or done
        waiter = asyncio.get_running_loop().create_future()
        self._waiters[channel].append(waiter)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(CHANNEL_SUBSCRIBE_WAIT_SECONDS):
                await waiter

    def _subscribed_to(self, channel: bytes) -> None:
        if channel in self._sent:
            self._confirmed.add(channel)
        for waiter in self._waiters.pop(channel, ()):
            if not waiter.done():
                waiter.set_result(None)

    def _unsubscribed(self) -> None:
        """The subscription is gone: nothing is sent or confirmed on it any more; nobody waits for it."""
        self._pubsub = None
        self._sent.clear()
        self._confirmed.clear()
        for waiters in self._waiters.values():
            for waiter in waiters:
                with contextlib.suppress(RuntimeError):  # a waiter of an event loop that closed meanwhile
                    if not waiter.done():
                        waiter.set_result(None)
        self._waiters.clear()

    @staticmethod
    def _discard(index: dict[str, set[Mailbox]], key: str, box: Mailbox) -> None:
        boxes = index.get(key)
        if boxes is not None:
            boxes.discard(box)
            if not boxes:
                del index[key]

    def connections(self, board: str | None = None) -> int:
        if board is not None:
            return len(self._boards.get(board, ()))
        return sum(len(b) for b in self._boards.values())

    async def snapshot(self, board: str, read: Callable[[str], Awaitable[Frame]]) -> Frame:
        """The current snapshot of ``board`` for a socket that is already attached.

        One ``read`` serves every socket that asked before it started, so a storm of (re)connects
        costs a few reads instead of one each. A socket never gets a read that started before it
        asked: a frame published in between could be newer than that read and, as the socket was
        not attached yet when it was fanned out, never reach it.
        """
        loop = asyncio.get_running_loop()
        batch = self._snapshot_next.get(board)
        if batch is None:
            batch = self._snapshot_next[board] = loop.create_future()
            if board not in self._snapshot_reading:
                self._snapshot_reading[board] = loop.create_task(
                    self._read_snapshots(board, read), name="realtime-hub-snapshot"
                )
        return await asyncio.shield(batch)

    async def _read_snapshots(self, board: str, read: Callable[[str], Awaitable[Frame]]) -> None:
        try:
            # Everyone in a batch asked before its read starts; who asks meanwhile waits for the next.
            while (batch := self._snapshot_next.pop(board, None)) is not None:
                try:
                    frame = await read(board)
                except asyncio.CancelledError:
                    batch.cancel()
                    raise
                except Exception as exc:
                    batch.set_exception(exc)
                    batch.exception()  # retrieved: the sockets waiting (if any) get it, not the log
                else:
                    batch.set_result(frame)
        finally:
            self._snapshot_reading.pop(board, None)

    # -- delivery (event loop thread) -------------------------------------------------------
    def fan_out_board(self, board: str, frame: Frame) -> None:
        boxes = self._boards.get(board)
        if not boxes:
            return  # nobody here watches this board
        # A copy: a socket's send runs inside offer() and must not be able to change the set under us.
        for box in tuple(boxes):
            try:
                box.offer(frame)
            except Exception:  # one socket's trouble must not cost the others this frame
                logger.warning("realtime: a socket's offer failed", exc_info=True)
        BOARD_FRAMES.inc()

    def fan_out_player(self, user_id: str, frame: Frame) -> None:
        revoked = frame.kind == SESSION_REVOKED
        for box in tuple(self._players.get(user_id, ())):
            try:
                if revoked:
                    box.revoke(frame)
                else:
                    box.offer(frame)
            except Exception:
                logger.warning("realtime: a socket's offer failed", exc_info=True)

    @staticmethod
    def _apart(fan_out: Callable[[], None]) -> None:
        """Run ``fan_out`` in a task of its own, never in the subscription's (or a bare callback).

        The sockets' ASGI sends run inside the fan-out (``Mailbox._push``), and a send wrapper may
        cancel its current task (``asyncio.timeout``, ``current_task().cancel()``): that must reach
        at most this short task, which has no await left to interrupt, never the listener of the
        whole process. (A bare loop callback has no current task: ``asyncio.timeout`` would refuse.)
        """

        async def run() -> None:
            fan_out()

        task = asyncio.get_running_loop().create_task(run(), name="realtime-hub-fan-out")
        _fanning_out.add(task)
        task.add_done_callback(_fan_out_done)

    # -- embedded hand-off (any thread) -----------------------------------------------------
    def deliver_threadsafe(self, *, board: str | None = None, user_id: str | None = None, frame: Frame) -> None:
        """Hand a frame published in this process (embedded default) to the event loop."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return  # no socket has ever connected to this process: nobody to tell
        callback = (
            functools.partial(self.fan_out_board, board, frame)
            if board is not None
            else functools.partial(self.fan_out_player, user_id or "", frame)
        )
        if _running_loop() is loop:
            callback()
        else:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(self._apart, callback)

    # -- the Redis subscription ---------------------------------------------------------------
    async def _ensure_running(self) -> None:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            # A new event loop (a restarted server, or the next test): start over on it.
            self._loop = loop
            self._boards.clear()
            self._players.clear()
            self._paced.clear()  # their slots were booked on the old loop: they would never come
            self._next_slot.clear()
            self._cpu_clock = 0.0  # a time on the old loop's clock
            self._unsubscribed()
            self._reconciling = None
            self._listener = None
            self._subscribed = None
            self.subscription_alive = False
            self._snapshot_next.clear()
            self._snapshot_reading.clear()
        if not settings.REDIS_URL:
            return
        if self._listener is None or self._listener.done():
            self._subscribed = asyncio.Event()
            self._subscribe_deadline = loop.time() + SUBSCRIBE_WAIT_SECONDS
            self._listener = loop.create_task(self._listen(self._subscribed), name="realtime-hub-listener")
        assert self._subscribed is not None
        # Sockets opened while the first subscription is being set up wait for it (bounded), so they
        # cannot miss a publish; once the deadline passed (Redis down at start) nobody waits.
        remaining = self._subscribe_deadline - loop.time()
        if not self._subscribed.is_set() and remaining > 0:
            try:
                async with asyncio.timeout(remaining):
                    await self._subscribed.wait()
            except TimeoutError:
                logger.warning("realtime: Redis subscription not ready; serving without live updates for now")

    async def _listen(self, subscribed: asyncio.Event) -> None:
        delay = RECONNECT_MIN_SECONDS
        resumed = False
        loop = asyncio.get_running_loop()
        # On a cluster the processes spread their subscriptions over the nodes (by pid), then move on
        # to the next node after a failure (a classic PUBLISH reaches every node).
        attempt = os.getpid()
        while True:
            url = pubsub_url(attempt)
            breaker = scoreboard_redis.breaker_for_url(url)
            if breaker is not None and breaker.is_open:
                # Redis failed just now (for any client of this process): no connection attempts
                # until the breaker's prober saw it answer again; sockets keep their last snapshot.
                resumed = True
                attempt += 1
                await asyncio.sleep(RECONNECT_MIN_SECONDS)
                continue
            SUBSCRIBE_ATTEMPTS.inc()
            # A bounded connect, one attempt (the breaker's policy): an unreachable Redis fails it, and
            # the loop below backs off and tries again.
            client = aioredis.Redis.from_url(
                url,
                client_name=HUB_CLIENT_NAME,
                socket_connect_timeout=max(HUB_CONNECT_TIMEOUT_SECONDS, settings.REDIS_SOCKET_TIMEOUT),
                retry=AsyncRetry(NoBackoff(), 0),
            )
            pubsub = client.pubsub()
            ping_sent_at: float | None = None
            try:
                # The boards watched and the players here first, the hub channel last: its
                # confirmation means every channel of this SUBSCRIBE is (Redis answers in order).
                wanted = self._wanted()
                await pubsub.subscribe(*wanted, hub_channel())
                self._pubsub, self._sent = pubsub, wanted
                self._channels_changed()  # who connected or left during that write
                while True:
                    message = await pubsub.get_message(
                        timeout=IDLE_PING_SECONDS if ping_sent_at is None else PONG_TIMEOUT_SECONDS
                    )
                    if message is None:
                        if ping_sent_at is not None:
                            raise redis.TimeoutError(
                                f"Redis left the subscription's PING unanswered for {PONG_TIMEOUT_SECONDS:.0f}s"
                            )
                        # A quiet board: prove the connection is alive (a dead one raises here, a hung
                        # server leaves the PING unanswered).
                        await pubsub.ping()
                        ping_sent_at = loop.time()
                        continue
                    ping_sent_at = None  # anything that arrives proves the link alive
                    # What else arrived meanwhile (publishes that came faster than a fan-out took) is
                    # taken now, so that only the newest snapshot of a board is fanned out.
                    arrived: list[tuple[bytes, bytes]] = []
                    while message is not None:
                        if message["type"] == "message":
                            arrived.append((message["channel"], message["data"]))
                        elif message["type"] == "subscribe" and message["channel"] != hub_channel():
                            self._subscribed_to(message["channel"])
                        elif message["type"] == "subscribe":
                            self._apart(functools.partial(self._on_messages, arrived))
                            arrived = []
                            # Both channels confirmed. Again later means redis-py reconnected on its
                            # own: frames may have been missed meanwhile, so everyone gets a fresh snapshot.
                            delay = RECONNECT_MIN_SECONDS
                            self.subscription_alive = True
                            if breaker is not None:
                                breaker.success()
                            if resumed or subscribed.is_set():
                                await self._resync()
                            subscribed.set()
                            resumed = False
                        message = await pubsub.get_message(timeout=0.0) if len(arrived) < DRAIN_MAX else None
                    if arrived:
                        self._apart(functools.partial(self._on_messages, arrived))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.subscription_alive = False
                if breaker is not None and isinstance(exc, scoreboard_redis.REDIS_OUTAGE_ERRORS):
                    breaker.failure(exc)  # the other clients of this process stop waiting on it too
                logger.warning("realtime: Redis subscription lost; retrying in %.1fs", delay, exc_info=True)
                resumed = True
                attempt += 1
                await asyncio.sleep(delay)
                delay = min(delay * 2, RECONNECT_MAX_SECONDS)
            finally:
                if self._pubsub is pubsub:
                    self._unsubscribed()
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
                    await client.aclose()

    def _on_messages(self, messages: list[tuple[bytes, bytes]]) -> None:
        """Fan out what arrived together: every player update, and each board's newest snapshot only.

        A board no socket of this process watches any more (its unsubscribe still in flight) is
        dropped at its channel's name: no frame is built for it.

        Snapshots are complete, so one that a newer snapshot already replaced is never written: when
        publishes come faster than this process can fan them out, its sockets skip to the newest
        instead of the backlog (and the latency) growing with every publish.
        """
        newest: dict[str, Frame] = {}
        boards, players = board_channel(), player_channel()
        for channel, data in messages:
            try:
                if channel.startswith(boards):
                    if (name := channel[len(boards) :].decode()) not in self._boards:
                        continue  # no socket here watches it any more (an unsubscribe in flight)
                    seq, payload = data.split(b"\n", 1)
                    frame = Frame(LEADERBOARD_UPDATE, int(seq), payload)
                    held = newest.get(name)
                    if held is not None:
                        SNAPSHOTS_REPLACED.inc()
                    if held is None or frame.seq > held.seq:
                        newest[name] = frame
                elif channel.startswith(players):
                    self.fan_out_player(channel[len(players) :].decode(), player_frame(data))
            except ValueError:
                logger.warning("realtime: ignoring a malformed frame on %r", channel)
        for name, frame in newest.items():
            self._board_frame(name, frame)

    def _board_frame(self, board: str, frame: Frame) -> None:
        """Fan ``frame`` out now, or at the board's next slot when one is booked.

        A slot comes from pacing (``REALTIME_BOARD_FRAME_INTERVAL_MS``: at most one snapshot of a board
        per interval in this process) or from a back-off (``REALTIME_SATURATION_BACKOFF``, see
        ``_fan_out_now``). A frame arriving before the slot waits for it and is replaced by any newer
        one meanwhile (snapshots are complete), so a burst of top-10 changes costs this process one
        fan-out per slot instead of one per change, and the last change of a burst is never held
        longer than the slot."""
        held = self._paced.get(board)
        if held is not None:  # a slot is booked: the newest frame takes it
            if frame.seq > held.seq:
                SNAPSHOTS_REPLACED.inc()
                self._paced[board] = frame
            return
        loop = asyncio.get_running_loop()
        due = self._next_slot.get(board)
        if due is None or loop.time() >= due:
            self._fan_out_now(board, frame)
            return
        self._paced[board] = frame
        loop.call_at(due, self._apart, functools.partial(self._paced_fan_out, board))

    def _paced_fan_out(self, board: str) -> None:
        frame = self._paced.pop(board, None)
        if frame is not None:
            self._fan_out_now(board, frame)

    def _fan_out_now(self, board: str, frame: Frame) -> None:
        """Fan out, then book the board's next slot if pacing or a back-off asks for one.

        The back-off: a fan-out is one synchronous loop of socket writes, so the wall time it took
        beyond its own CPU time is time this process was kept off the cores. More than
        ``REALTIME_SATURATION_BACKOFF_RATIO`` times its CPU time means the box is saturated: the
        board then waits until this process's fan-outs (of every board) have used at most
        ``REALTIME_SATURATION_CPU_SHARE`` of a core (0.15: a fan-out that used 20 ms of CPU is
        followed by the board's next no sooner than 133 ms after it started), at most
        ``BACKOFF_MAX_SECONDS`` after it ended. That bounds the live board's CPU while the box is
        saturated, whatever its wall time was: the score updates keep cores to run on instead of
        queueing behind the fan-out, and the sockets get the newest snapshot when the slot comes. A
        fan-out that used little CPU holds nothing even then, and while the box has room (wall close
        to CPU) nothing is held at all. With the share at 0 the hold is
        ``REALTIME_SATURATION_BACKOFF_HOLD`` times the fan-out's wall time (the earlier rule).
        """
        loop = asyncio.get_running_loop()
        started, cpu = loop.time(), time.thread_time()
        self.fan_out_board(board, frame)
        ended = loop.time()
        wall, used = ended - started, time.thread_time() - cpu
        slot = started + settings.REALTIME_BOARD_FRAME_INTERVAL_MS / 1000
        ratio = settings.REALTIME_SATURATION_BACKOFF_RATIO
        if settings.REALTIME_SATURATION_BACKOFF and wall >= BACKOFF_MIN_SECONDS and wall > ratio * used:
            FANOUT_BACKOFFS.inc()
            share = settings.REALTIME_SATURATION_CPU_SHARE
            latest = ended + BACKOFF_MAX_SECONDS
            if share > 0:
                # Saturated fan-outs of every board add up (a fan-out while the box had room owes nothing).
                self._cpu_clock = held = min(max(self._cpu_clock, started) + used / share, latest)
            else:
                held = min(ended + wall * settings.REALTIME_SATURATION_BACKOFF_HOLD, latest)
            slot = max(slot, held)
        if slot > ended:
            self._next_slot[board] = slot
        else:
            self._next_slot.pop(board, None)

    async def _resync(self) -> None:
        """After a lost subscription the sockets may have missed frames: send everyone a fresh snapshot."""
        from asgiref.sync import sync_to_async

        read = _snapshot_reader
        if read is None:
            return
        for board in list(self._boards):
            try:
                frame = await sync_to_async(read)(board=board)
            except LookupError:  # the board was deactivated meanwhile
                continue
            self._apart(functools.partial(self.fan_out_board, board, frame))


# How the hub reads a board's current snapshot after a lost subscription: set by the realtime app
# (``realtime.services.board_snapshot_by_name``), so this module does not import the services.
SnapshotReader = Callable[..., Frame]
_snapshot_reader: SnapshotReader | None = None


def snapshot_reader_set(read: SnapshotReader) -> None:
    global _snapshot_reader
    _snapshot_reader = read


def _fan_out_done(task: asyncio.Task[None]) -> None:
    _fanning_out.discard(task)
    # Cancelled: a socket's send wrapper cancelled its current task after the fan-out had run (harmless).
    if not task.cancelled() and task.exception() is not None:
        logger.error("realtime: a fan-out failed", exc_info=task.exception())


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


_hub: Hub | None = None
_hub_lock = threading.Lock()


def get_hub() -> Hub:
    """The process-wide hub."""
    global _hub
    if _hub is None:
        with _hub_lock:
            if _hub is None:
                _hub = Hub()
    return _hub
