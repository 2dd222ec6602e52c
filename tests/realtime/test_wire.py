"""Pre-framed writes (realtime/wire.py): the frame bytes, and when a server's transport may take them."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import uvicorn
from prometheus_client import REGISTRY
from websockets.asyncio.client import connect
from websockets.frames import Frame as WsFrame
from websockets.frames import Opcode

from realtime import releases, wire
from realtime.wire import SERVER_SEND, CaptureServerSend, preframed_problem, raw_writer, text_frame
from tests.realtime.servers import free_port

pytestmark = [pytest.mark.embedded]


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65535, 65536, 70000])
def test_text_frame_is_what_websockets_would_send(size: int) -> None:
    payload = b"x" * size
    assert text_frame(payload) == WsFrame(Opcode.TEXT, payload).serialize(mask=False)


async def test_servers_other_than_uvicorn_sans_io_get_no_writer() -> None:
    async def asgi_send(message: dict[str, Any]) -> None:
        pass

    class Daphneish:
        async def send(self, message: dict[str, Any]) -> None:
            pass

    assert raw_writer(None) is None
    assert raw_writer(asgi_send) is None
    assert raw_writer(Daphneish().send) is None


@contextlib.asynccontextmanager
async def uvicorn_server(app: Any, *, deflate: bool, ws: str = "websockets-sansio") -> AsyncIterator[int]:
    port = free_port(set())
    config = uvicorn.Config(
        CaptureServerSend(app),
        host="127.0.0.1",
        port=port,
        ws=ws,
        ws_per_message_deflate=deflate,
        lifespan="off",
        log_level="warning",
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    try:
        yield port
    finally:
        server.should_exit = True
        await task


@pytest.mark.parametrize("protocol", ["websockets-sansio", "realtime.protocol:LeanWebSocketProtocol"])
async def test_uvicorn_sans_io_takes_pre_framed_frames_until_the_close(protocol: str) -> None:
    seen: dict[str, Any] = {}

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert (await receive())["type"] == "websocket.connect"
        write = raw_writer(scope[SERVER_SEND])
        seen["before_accept"] = write is not None and write(text_frame(b"early"))
        await send({"type": "websocket.accept"})
        write = raw_writer(scope[SERVER_SEND])
        assert write is not None
        seen["open"] = write(text_frame('{"board":"ü"}'.encode()))
        await send({"type": "websocket.send", "text": "then the ASGI send"})
        seen["again"] = write(text_frame(b"pre-framed again"))
        await send({"type": "websocket.close", "code": 1000})
        seen["after_close"] = write(text_frame(b"too late"))
        while (await receive())["type"] != "websocket.disconnect":
            pass

    async with uvicorn_server(app, deflate=False, ws=protocol) as port, connect(f"ws://127.0.0.1:{port}") as ws:
        received = [message async for message in ws]
    assert received == ['{"board":"ü"}', "then the ASGI send", "pre-framed again"]
    assert seen == {"before_accept": False, "open": True, "again": True, "after_close": False}


async def test_uvicorn_with_per_message_deflate_gets_no_writer() -> None:
    seen: dict[str, Any] = {}

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        seen["writer"] = raw_writer(scope[SERVER_SEND])
        await send({"type": "websocket.close", "code": 1000})
        while (await receive())["type"] != "websocket.disconnect":
            pass

    async with (
        uvicorn_server(app, deflate=True) as port,
        connect(f"ws://127.0.0.1:{port}", compression="deflate") as ws,
    ):
        with contextlib.suppress(Exception):
            await ws.recv()
    assert seen == {"writer": None}


async def test_a_transport_that_raises_makes_the_writer_decline() -> None:
    seen: dict[str, Any] = {}

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        transport = scope[SERVER_SEND].__self__.transport
        real_write = transport.write

        def broken(data: bytes) -> None:
            raise RuntimeError("transport gone")

        transport.write = broken  # asyncio's transport in this test (uvicorn's loop: the test's)
        try:
            write = raw_writer(scope[SERVER_SEND])
            assert write is not None
            seen["declined"] = write(text_frame(b"lost")) is False
        finally:
            transport.write = real_write
        await send({"type": "websocket.close", "code": 1000})
        while (await receive())["type"] != "websocket.disconnect":
            pass

    async with uvicorn_server(app, deflate=False) as port, connect(f"ws://127.0.0.1:{port}") as ws:
        received = [message async for message in ws]
    assert received == []
    assert seen == {"declined": True}


# -- the check at start, and the fall-back --------------------------------------------------------
@pytest.fixture
def fresh_check() -> Iterator[None]:
    preframed_problem.cache_clear()
    yield
    preframed_problem.cache_clear()


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_the_pinned_releases_pass_the_check(fresh_check: None) -> None:
    assert preframed_problem() is None
    assert sample("scoreboard_realtime_preframed_writer") == 1


@pytest.mark.parametrize(
    ("patch", "expected"),
    [
        ((releases, "VERIFIED_RELEASES", {"uvicorn": ("0.1.",), "websockets": ("17.",)}), "uvicorn"),
        ((wire, "PROTOCOL_ATTRIBUTES", ("conn", "no_such_attribute")), "no_such_attribute"),
    ],
)
async def test_internals_other_than_verified_fall_back_to_the_asgi_send(
    fresh_check: None, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, patch: Any, expected: str
) -> None:
    monkeypatch.setattr(*patch)
    before = sample("scoreboard_realtime_preframed_fallbacks_total", reason="internals")
    caplog.set_level("WARNING", logger="realtime.wire")
    seen: dict[str, Any] = {}

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        seen["writer"] = raw_writer(scope[SERVER_SEND])
        await send({"type": "websocket.send", "text": "by the ASGI send"})
        await send({"type": "websocket.close", "code": 1000})
        while (await receive())["type"] != "websocket.disconnect":
            pass

    async with uvicorn_server(app, deflate=False) as port, connect(f"ws://127.0.0.1:{port}") as ws:
        received = [message async for message in ws]
    assert seen == {"writer": None}
    assert received == ["by the ASGI send"]
    problem = preframed_problem()
    assert problem is not None and expected in problem
    assert sample("scoreboard_realtime_preframed_writer") == 0
    assert sample("scoreboard_realtime_preframed_fallbacks_total", reason="internals") == before + 1
    # One line, however many sockets asked.
    assert len([r for r in caplog.records if "take the ASGI send" in r.getMessage()]) == 1


def test_the_writer_can_be_switched_off(fresh_check: None, settings: Any) -> None:
    settings.REALTIME_PREFRAMED_WRITES = False
    assert preframed_problem() == "disabled by REALTIME_PREFRAMED_WRITES"
    assert sample("scoreboard_realtime_preframed_writer") == 0


async def test_a_writer_whose_internals_break_declines_for_good(fresh_check: None) -> None:
    seen: dict[str, Any] = {}
    before = sample("scoreboard_realtime_preframed_fallbacks_total", reason="error")

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        protocol = scope[SERVER_SEND].__self__
        write = raw_writer(scope[SERVER_SEND])
        assert write is not None
        seen["before"] = write(text_frame(b"pre-framed"))
        close_sent = protocol.close_sent
        del protocol.close_sent  # as if a release renamed it
        seen["broken"] = write(text_frame(b"lost"))
        protocol.close_sent = close_sent
        seen["after"] = write(text_frame(b"still declined"))
        await send({"type": "websocket.send", "text": "by the ASGI send"})
        await send({"type": "websocket.close", "code": 1000})
        while (await receive())["type"] != "websocket.disconnect":
            pass

    async with uvicorn_server(app, deflate=False) as port, connect(f"ws://127.0.0.1:{port}") as ws:
        received = [message async for message in ws]
    assert seen == {"before": True, "broken": False, "after": False}
    assert received == ["pre-framed", "by the ASGI send"]
    assert sample("scoreboard_realtime_preframed_fallbacks_total", reason="error") == before + 1
