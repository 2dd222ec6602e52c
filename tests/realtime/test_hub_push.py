"""A WebSocket's mailbox in push mode: frames are written from the fan-out itself while the socket
keeps up; a socket whose write has to wait gets a task of its own and skips to the newest snapshot."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from realtime.frames import LEADERBOARD_UPDATE, RANK_UPDATE, Frame
from realtime.hub import Hub, Mailbox

pytestmark = [pytest.mark.embedded]


def board(seq: int) -> Frame:
    return Frame(LEADERBOARD_UPDATE, seq, b'{"seq":%d}' % seq)


def own(n: int) -> Frame:
    return Frame(RANK_UPDATE, 0, b'{"n":%d}' % n)


class Socket:
    """An ASGI send recording what it wrote; ``block()`` makes the next writes wait (a full buffer)."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.gate: asyncio.Future[None] | None = None
        self.cancelled = 0
        self.error: Exception | None = None
        # Seconds each write holds the thread without using the CPU: a process kept off the cores.
        self.stall = 0.0
        # Seconds of CPU each write spends (spinning).
        self.burn = 0.0

    def block(self) -> None:
        self.gate = asyncio.get_running_loop().create_future()

    def unblock(self) -> None:
        assert self.gate is not None
        self.gate.set_result(None)
        self.gate = None

    async def send(self, message: dict[str, Any]) -> None:
        assert message["type"] == "websocket.send"
        if self.error is not None:
            raise self.error
        if self.burn:
            until = time.thread_time() + self.burn
            while time.thread_time() < until:
                pass
        if self.stall:
            time.sleep(self.stall)
        if self.gate is not None:
            try:
                await self.gate
            except asyncio.CancelledError:
                self.cancelled += 1
                raise
        self.sent.append(message["text"])


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def pushing(
    sock: Socket, hub: Hub | None = None, user_id: str | None = None, board_name: str = "global"
) -> Mailbox:
    box = Mailbox(board_name)
    box.user_id = user_id
    if hub is not None:
        await hub.attach(box)
    box.start_push(sock.send)
    return box


async def test_a_socket_that_keeps_up_is_written_during_the_fan_out():
    sock = Socket()
    box = await pushing(sock)
    box.offer(board(5))
    box.offer(own(1))
    box.offer(board(4))  # older than what it has: never sent
    # Written synchronously by offer(): no task had to run.
    assert sock.sent == ['{"seq":5}', '{"n":1}']
    assert box.last_seq == 5


async def test_frames_offered_before_the_push_starts_go_first_in_order():
    sock = Socket()
    box = Mailbox("global")
    box.last_seq = 3  # the snapshot sent on connect
    for frame in (board(2), board(4), own(1), board(6)):
        box.offer(frame)
    box.start_push(sock.send)
    box.offer(board(7))  # behind the pending ones: not written ahead of them
    assert sock.sent == []
    await settle()
    assert sock.sent == ['{"n":1}', '{"seq":7}']
    box.offer(board(8))
    assert sock.sent[-1] == '{"seq":8}'


async def test_a_blocked_socket_skips_to_the_newest_snapshot_and_delays_nobody():
    hub = Hub()
    slow, fast = Socket(), Socket()
    slow_box = await pushing(slow, hub, user_id="p1")
    await pushing(fast, hub)
    slow.block()
    hub.fan_out_board("global", board(1))  # the slow socket's write starts and has to wait
    for seq in range(2, 50):
        hub.fan_out_board("global", board(seq))
    hub.fan_out_player("p1", own(1))
    assert fast.sent == [f'{{"seq":{seq}}}' for seq in range(1, 50)]
    assert slow.sent == []
    assert slow_box.skipped == 47
    slow.unblock()
    await settle()
    # The write that waited completes, then its own update, then only the newest snapshot.
    assert slow.sent == ['{"seq":1}', '{"n":1}', '{"seq":49}']
    hub.fan_out_board("global", board(50))  # idle again: written straight away
    assert slow.sent[-1] == fast.sent[-1] == '{"seq":50}'


async def test_a_write_that_fails_stops_that_socket_only():
    hub = Hub()
    broken, fine = Socket(), Socket()
    broken.error = ConnectionResetError("gone")
    broken_box = await pushing(broken, hub)
    await pushing(fine, hub)
    hub.fan_out_board("global", board(1))
    broken.error = None
    hub.fan_out_board("global", board(2))
    assert fine.sent == ['{"seq":1}', '{"seq":2}']
    assert broken.sent == []  # no more writes to a socket that failed; disconnect() detaches it
    hub.detach(broken_box)
    broken_box.stop_push()


async def test_a_write_failing_after_it_waited_stops_that_socket():
    sock = Socket()
    box = await pushing(sock)
    sock.block()
    box.offer(board(1))
    box.offer(board(2))
    sock.error = ConnectionResetError("gone")
    assert sock.gate is not None
    sock.gate.set_exception(ConnectionResetError("gone"))
    sock.gate = None
    await settle()
    sock.error = None
    box.offer(board(3))
    assert sock.sent == []


async def test_stop_push_cancels_a_waiting_write():
    sock = Socket()
    box = await pushing(sock)
    sock.block()
    box.offer(board(1))
    box.offer(board(2))
    box.stop_push()
    await settle()
    assert sock.cancelled == 1  # the cancellation reached the ASGI send that was waiting
    box.offer(board(3))
    await settle()
    assert sock.sent == []


class Reads:
    """A snapshot read that waits until the test lets it finish; counts the reads."""

    def __init__(self) -> None:
        self.started: list[asyncio.Future[Frame]] = []

    async def __call__(self, board_name: str) -> Frame:
        assert board_name == "global"
        done: asyncio.Future[Frame] = asyncio.get_running_loop().create_future()
        self.started.append(done)
        return await done


async def test_sockets_connecting_together_share_one_snapshot_read():
    hub, reads = Hub(), Reads()
    first = [asyncio.create_task(hub.snapshot("global", reads)) for _ in range(50)]
    await settle()
    assert len(reads.started) == 1
    # Asked while that read runs: it may have read the seq before these sockets attached, so they
    # get the next read, not this one.
    later = [asyncio.create_task(hub.snapshot("global", reads)) for _ in range(50)]
    await settle()
    reads.started[0].set_result(board(1))
    assert {(await t).seq for t in first} == {1}
    await settle()
    assert len(reads.started) == 2
    reads.started[1].set_result(board(2))
    assert {(await t).seq for t in later} == {2}
    await settle()
    assert len(reads.started) == 2  # nobody waiting: no more reads


async def test_a_failed_snapshot_read_reaches_its_sockets_and_the_next_ask_reads_again():
    hub, reads = Hub(), Reads()
    waiting = asyncio.create_task(hub.snapshot("global", reads))
    gone = asyncio.create_task(hub.snapshot("global", reads))
    await settle()
    gone.cancel()  # a socket that disconnected meanwhile does not cancel the read for the others
    await settle()
    reads.started[0].set_exception(ConnectionError("redis down"))
    with pytest.raises(ConnectionError):
        await waiting
    again = asyncio.create_task(hub.snapshot("global", reads))
    await settle()
    reads.started[1].set_result(board(7))
    assert (await again).seq == 7


class Raw:
    """A pre-framed writer (realtime/wire.py) that takes frames while ``open`` and declines otherwise."""

    def __init__(self) -> None:
        self.open = True
        self.wire: list[bytes] = []

    def __call__(self, wire: bytes) -> bool:
        if not self.open:
            return False
        self.wire.append(wire)
        return True


async def test_a_pre_framed_writer_takes_the_frames_while_it_can():
    sock, raw = Socket(), Raw()
    box = Mailbox("global")
    box.start_push(sock.send, raw)
    box.offer(board(1))
    box.offer(own(1))
    assert raw.wire == [board(1).ws_wire, own(1).ws_wire]
    assert sock.sent == []  # the ASGI send was not used
    raw.open = False  # paused or closing: the frame takes the ASGI send instead
    box.offer(board(2))
    assert sock.sent == ['{"seq":2}']
    raw.open = True
    box.offer(board(2))  # not newer than what it got: written nowhere
    box.offer(board(3))
    assert raw.wire[-1] == board(3).ws_wire
    assert box.last_seq == 3


async def test_a_blocked_asgi_send_keeps_the_pre_framed_writer_out_until_it_drains():
    sock, raw = Socket(), Raw()
    box = Mailbox("global")
    box.start_push(sock.send, raw)
    raw.open = False
    sock.block()
    box.offer(board(1))  # waits in the ASGI send
    raw.open = True
    box.offer(board(2))  # must not overtake the waiting write
    box.offer(board(3))
    assert raw.wire == []
    sock.unblock()
    await settle()
    assert sock.sent == ['{"seq":1}', '{"seq":3}']
    box.offer(board(4))  # idle again: pre-framed
    assert raw.wire == [board(4).ws_wire]


async def test_stop_push_drops_the_pre_framed_writer():
    sock, raw = Socket(), Raw()
    box = Mailbox("global")
    box.start_push(sock.send, raw)
    box.stop_push()
    box.offer(board(1))
    assert raw.wire == [] and sock.sent == []


def publish_to(hub: Hub, seq: int, board_name: str = "global") -> None:
    from realtime.hub import board_channel

    hub._on_messages([(board_channel(board_name), b"%d\n" % seq + b'{"seq":%d}' % seq)])


async def test_snapshots_that_arrived_together_fan_out_only_the_newest(settings):
    from realtime.hub import board_channel, player_channel

    settings.REDIS_URL = "redis://127.0.0.1:6379/9"  # only names the pub/sub channels here
    settings.REALTIME_SATURATION_BACKOFF = False  # depends on the box's load; tested below
    hub = Hub()
    sock, player = Socket(), Socket()
    await pushing(sock, hub)
    await pushing(player, hub, user_id="p1")
    hub._on_messages(
        [
            (board_channel("global"), b"7\n" + b'{"seq":7}'),
            (player_channel("p1"), b'{"n":1}'),
            (board_channel("global"), b"9\n" + b'{"seq":9}'),
            (board_channel("global"), b"8\n" + b'{"seq":8}'),  # older than 9, though it arrived later
            (player_channel("p1"), b'{"n":2}'),
            (board_channel("global"), b"garbage"),  # malformed: ignored, the rest still goes out
        ]
    )
    assert sock.sent == ['{"seq":9}']
    assert player.sent == ['{"n":1}', '{"n":2}', '{"seq":9}']


async def test_paced_board_frames_go_out_at_most_once_an_interval_and_the_newest_wins(settings):
    settings.REDIS_URL = "redis://127.0.0.1:6379/9"  # only names the pub/sub channels here
    settings.REALTIME_BOARD_FRAME_INTERVAL_MS = 100
    settings.REALTIME_SATURATION_BACKOFF = False  # depends on the box's load; tested below
    hub = Hub()
    sock = Socket()
    await pushing(sock, hub)
    loop = asyncio.get_running_loop()
    started = loop.time()
    publish_to(hub, 1)
    assert sock.sent == ['{"seq":1}']  # the first change of a quiet board goes out at once
    publish_to(hub, 2)
    publish_to(hub, 4)
    publish_to(hub, 3)  # older than 4: never sent
    assert sock.sent == ['{"seq":1}']  # inside the interval: held for the board's next slot
    while len(sock.sent) < 2 and loop.time() - started < 2:
        await asyncio.sleep(0.01)
    assert sock.sent == ['{"seq":1}', '{"seq":4}']  # one fan-out for the burst, its newest snapshot
    assert loop.time() - started >= 0.1
    await asyncio.sleep(0.15)
    publish_to(hub, 5)  # a change after a quiet interval: at once again
    assert sock.sent == ['{"seq":1}', '{"seq":4}', '{"seq":5}']


async def test_without_pacing_every_change_goes_out_at_once(settings):
    settings.REDIS_URL = "redis://127.0.0.1:6379/9"
    settings.REALTIME_BOARD_FRAME_INTERVAL_MS = 0
    settings.REALTIME_SATURATION_BACKOFF = False  # depends on the box's load; tested below
    hub = Hub()
    sock = Socket()
    await pushing(sock, hub)
    for seq in (1, 2, 3):
        publish_to(hub, seq)
    assert sock.sent == ['{"seq":1}', '{"seq":2}', '{"seq":3}']


async def test_a_fan_out_kept_off_the_cpu_holds_its_board_back_with_the_backoff_on(settings):
    settings.REDIS_URL = "redis://127.0.0.1:6379/9"  # only names the pub/sub channels here
    settings.REALTIME_BOARD_FRAME_INTERVAL_MS = 0
    settings.REALTIME_SATURATION_BACKOFF = True
    settings.REALTIME_SATURATION_CPU_SHARE = 0  # the wall-time hold (the share's tests are below)
    settings.REALTIME_SATURATION_BACKOFF_HOLD = 2.0
    hub = Hub()
    sock = Socket()
    await pushing(sock, hub)
    loop = asyncio.get_running_loop()
    sock.stall = 0.04  # the fan-out takes 40 ms of wall time and almost no CPU: the box is saturated
    publish_to(hub, 1)
    first_done = loop.time()
    assert sock.sent == ['{"seq":1}']  # the change itself goes out at once
    sock.stall = 0.0
    publish_to(hub, 2)
    publish_to(hub, 3)
    assert sock.sent == ['{"seq":1}']  # held back: the process leaves the cores to the others
    while len(sock.sent) < 2 and loop.time() - first_done < 2:
        await asyncio.sleep(0.005)
    assert sock.sent == ['{"seq":1}', '{"seq":3}']  # then the newest snapshot, once
    assert loop.time() - first_done >= 2 * 0.04 * 0.95  # HOLD times the fan-out's wall time
    # That fan-out used its CPU as fast as the wall clock: nothing is held any more.
    publish_to(hub, 4)
    publish_to(hub, 5)
    assert sock.sent == ['{"seq":1}', '{"seq":3}', '{"seq":4}', '{"seq":5}']


async def test_with_a_cpu_share_a_saturated_board_waits_until_its_fan_outs_used_at_most_that_share(settings):
    settings.REDIS_URL = "redis://127.0.0.1:6379/9"
    settings.REALTIME_BOARD_FRAME_INTERVAL_MS = 0
    settings.REALTIME_SATURATION_BACKOFF = True
    settings.REALTIME_SATURATION_CPU_SHARE = 0.05
    hub = Hub()
    sock = Socket()
    await pushing(sock, hub)
    loop = asyncio.get_running_loop()
    sock.burn, sock.stall = 0.01, 0.04  # 10 ms of CPU in 50 ms of wall time: saturated
    started = loop.time()
    publish_to(hub, 1)
    assert sock.sent == ['{"seq":1}']
    sock.burn = sock.stall = 0.0
    publish_to(hub, 2)
    assert sock.sent == ['{"seq":1}']
    while len(sock.sent) < 2 and loop.time() - started < 2:
        await asyncio.sleep(0.005)
    assert sock.sent == ['{"seq":1}', '{"seq":2}']
    # 10 ms of CPU at a share of 0.05: the next fan-out starts 200 ms after this one started (the
    # wall-time hold, 2 x 50 ms after its end, would have been 150 ms).
    assert loop.time() - started >= 0.2 * 0.95


async def test_with_a_cpu_share_the_saturated_fan_outs_of_every_board_add_up(settings):
    settings.REDIS_URL = "redis://127.0.0.1:6379/9"
    settings.REALTIME_BOARD_FRAME_INTERVAL_MS = 0
    settings.REALTIME_SATURATION_BACKOFF = True
    settings.REALTIME_SATURATION_CPU_SHARE = 0.05
    hub = Hub()
    one, other = Socket(), Socket()
    await pushing(one, hub)
    await pushing(other, hub, board_name="weekly")
    loop = asyncio.get_running_loop()
    one.burn = other.burn = 0.01
    one.stall = other.stall = 0.04
    started = loop.time()
    publish_to(hub, 1)  # global: 10 ms of CPU, saturated
    publish_to(hub, 1, board_name="weekly")  # weekly: 10 ms more, right after
    assert one.sent == ['{"seq":1}'] and other.sent == ['{"seq":1}']
    other.burn = other.stall = 0.0
    publish_to(hub, 2, board_name="weekly")
    while len(other.sent) < 2 and loop.time() - started < 3:
        await asyncio.sleep(0.005)
    # 20 ms of this process's CPU at a share of 0.05: weekly's next fan-out waits 400 ms from the first
    # start (its own 10 ms alone would have allowed it at about 250 ms).
    assert other.sent == ['{"seq":1}', '{"seq":2}']
    assert loop.time() - started >= 0.4 * 0.95


async def test_with_a_cpu_share_a_saturated_fan_out_that_used_little_cpu_holds_nothing(settings):
    settings.REDIS_URL = "redis://127.0.0.1:6379/9"
    settings.REALTIME_BOARD_FRAME_INTERVAL_MS = 0
    settings.REALTIME_SATURATION_BACKOFF = True
    settings.REALTIME_SATURATION_CPU_SHARE = 0.5
    hub = Hub()
    sock = Socket()
    await pushing(sock, hub)
    sock.stall = 0.03  # off the cores for 30 ms, but well under half a core of CPU: nothing to give back
    publish_to(hub, 1)
    sock.stall = 0.0
    publish_to(hub, 2)
    assert sock.sent == ['{"seq":1}', '{"seq":2}']


async def test_without_the_backoff_a_stalled_fan_out_holds_nothing_back(settings):
    settings.REDIS_URL = "redis://127.0.0.1:6379/9"
    settings.REALTIME_BOARD_FRAME_INTERVAL_MS = 0
    settings.REALTIME_SATURATION_BACKOFF = False
    hub = Hub()
    sock = Socket()
    await pushing(sock, hub)
    sock.stall = 0.02
    for seq in (1, 2, 3):
        publish_to(hub, seq)
    assert sock.sent == ['{"seq":1}', '{"seq":2}', '{"seq":3}']
