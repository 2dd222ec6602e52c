"""realtime/protocol.py: uvicorn's sans-I/O protocol holding less per socket, behaving the same."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from websockets.asyncio.client import connect

from realtime import protocol
from realtime.protocol import LeanEvent, LeanQueue, LeanWebSocketProtocol
from realtime.wire import SERVER_SEND
from tests.realtime.test_wire import uvicorn_server

pytestmark = [pytest.mark.embedded]
LEAN = "realtime.protocol:LeanWebSocketProtocol"


async def test_queue_hands_items_over_in_order_and_wakes_a_waiting_getter() -> None:
    queue = LeanQueue()
    assert queue.empty() and queue.qsize() == 0
    getter = asyncio.create_task(queue.get())
    await asyncio.sleep(0)
    assert not getter.done()
    queue.put_nowait("a")
    queue.put_nowait("b")
    assert queue.qsize() == 2
    assert await getter == "a"
    assert await queue.get() == "b"
    assert queue.empty()


async def test_a_getter_cancelled_after_its_wake_up_passes_the_item_on() -> None:
    queue = LeanQueue()
    first = asyncio.create_task(queue.get())
    second = asyncio.create_task(queue.get())
    await asyncio.sleep(0)
    queue.put_nowait("only")  # wakes the first getter...
    first.cancel()  # ...which is cancelled before it runs
    assert await second == "only"
    with pytest.raises(asyncio.CancelledError):
        await first


async def test_event_wait_set_clear() -> None:
    event = LeanEvent()
    assert not event.is_set()
    waiters = [asyncio.create_task(event.wait()) for _ in range(3)]
    await asyncio.sleep(0)
    assert not any(w.done() for w in waiters)
    event.set()
    assert await asyncio.gather(*waiters) == [True, True, True]
    event.clear()
    assert not event.is_set()
    late = asyncio.create_task(event.wait())
    await asyncio.sleep(0)
    late.cancel()  # a cancelled waiter leaves nothing behind
    with pytest.raises(asyncio.CancelledError):
        await late
    assert not event._waiters
    event.set()
    assert await event.wait()


async def test_a_real_socket_over_the_lean_protocol() -> None:
    """Both directions work, the handshake's request and response are let go, the lean parts are in use."""
    assert protocol.LEAN  # the pinned releases: the subclass is active, not a silent pass-through
    seen: dict[str, Any] = {}

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert (await receive())["type"] == "websocket.connect"
        server = scope[SERVER_SEND].__self__
        await send({"type": "websocket.accept"})
        seen["type"] = type(server)
        seen["parts"] = (type(server.queue), type(server.writable))
        seen["handshake_kept"] = (server.request, server.response)
        while (message := await receive())["type"] == "websocket.receive":
            await send({"type": "websocket.send", "text": message["text"].upper()})
        seen["closed"] = message["type"]

    async with uvicorn_server(app, deflate=False, ws=LEAN) as port:
        async with connect(f"ws://127.0.0.1:{port}") as ws:
            for word in ("one", "two"):
                await ws.send(word)
                assert await ws.recv() == word.upper()
        for _ in range(100):
            if "closed" in seen:
                break
            await asyncio.sleep(0.02)
    assert seen == {
        "type": LeanWebSocketProtocol,
        "parts": (LeanQueue, LeanEvent),
        "handshake_kept": (None, None),
        "closed": "websocket.disconnect",
    }
