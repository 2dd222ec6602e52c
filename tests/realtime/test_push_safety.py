"""The process's Redis subscription survives whatever a socket's send does.

The hub writes frames from the fan-out itself (realtime/hub.py ``Mailbox._push``): a socket's ASGI
send (and every middleware wrapping it) runs inside it. A wrapper that times out
(``asyncio.timeout``) or cancels its current task must not take the listener down with it: every
other socket of the process would silently stop receiving.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis
from django.conf import settings

from realtime.hub import Hub, Mailbox, board_channel

pytestmark = [pytest.mark.redis]

SEQ_BASE = 9 * 10**15
RECEIVE_TIMEOUT = 10


class Recorder:
    def __init__(self) -> None:
        self.sent: list[str] = []
        self.arrived = asyncio.Event()

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message["text"])
        self.arrived.set()

    async def wait_for(self, count: int) -> None:
        async with asyncio.timeout(RECEIVE_TIMEOUT):
            while len(self.sent) < count:
                self.arrived.clear()
                await self.arrived.wait()


def frame(board: str, seq: int) -> bytes:
    return b"%s\n%d\n" % (board.encode(), seq) + b'{"seq":%d}' % seq


async def publish(*frames: bytes) -> None:
    client = aioredis.Redis.from_url(settings.REDIS_URL)
    try:
        for data in frames:  # "<board>\n<seq>\n<json>": the board names its channel
            board, rest = data.split(b"\n", 1)
            await client.publish(board_channel(board.decode()), rest)
    finally:
        await client.aclose()


async def attached(hub: Hub, send: Callable[[dict[str, Any]], Awaitable[None]]) -> Mailbox:
    box = Mailbox("global")
    await hub.attach(box)
    box.start_push(send)
    return box


async def _times_out(message: dict[str, Any]) -> None:
    # A wrapper that bounds the send with asyncio.timeout, and a send that never completes.
    async with asyncio.timeout(0.05):
        await asyncio.Event().wait()


async def _cancels_itself(message: dict[str, Any]) -> None:
    task = asyncio.current_task()
    assert task is not None
    task.cancel()
    await asyncio.sleep(0.2)


async def _raises_cancelled(message: dict[str, Any]) -> None:
    raise asyncio.CancelledError


@pytest.mark.parametrize("wrapper", [_times_out, _cancels_itself, _raises_cancelled])
async def test_a_send_that_times_out_or_is_cancelled_leaves_the_listener_running(wrapper):
    hub = Hub()
    good = Recorder()
    await attached(hub, wrapper)
    await attached(hub, good.send)
    listener = hub._listener
    assert listener is not None and not listener.done()

    await publish(frame("global", SEQ_BASE + 1))
    await good.wait_for(1)
    await asyncio.sleep(0.3)  # past the wrapper's timeout and its own cancellation
    assert not listener.done(), "the hub's listener was cancelled by one socket's send"

    # The process still delivers: later publishes reach the socket that keeps up.
    await publish(frame("global", SEQ_BASE + 2), frame("global", SEQ_BASE + 3))
    await good.wait_for(2)
    assert good.sent[0] == f'{{"seq":{SEQ_BASE + 1}}}'
    assert good.sent[-1] == f'{{"seq":{SEQ_BASE + 3}}}'
    assert not listener.done()
    listener.cancel()


async def test_a_board_nobody_here_watches_is_dropped_unread(caplog):
    hub = Hub()
    watcher = Recorder()
    await attached(hub, watcher.send)
    listener = hub._listener
    assert listener is not None
    caplog.set_level(logging.WARNING, logger="realtime.hub")
    # Malformed after the board name: a process that parsed it would log a warning.
    hub._on_messages([(board_channel("weekly"), b"not-a-seq\n{}")])
    assert not [r for r in caplog.records if "malformed" in r.getMessage()]
    hub._on_messages([(board_channel("global"), b"not-a-seq\n{}")])
    assert [r for r in caplog.records if "malformed" in r.getMessage()]
    await publish(frame("weekly", SEQ_BASE + 1), frame("global", SEQ_BASE + 2))
    await watcher.wait_for(1)
    assert watcher.sent == [f'{{"seq":{SEQ_BASE + 2}}}']
    listener.cancel()
