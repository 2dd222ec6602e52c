"""The per-address cap on open WebSockets (realtime/connection_cap.py), shared by real uvicorn processes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from websockets.exceptions import InvalidStatus

from tests.realtime.servers import Server, asgi_servers

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.postgres,
    pytest.mark.redis,
    pytest.mark.slow,
]

CAP = 3
CAP_ENV = {
    "REALTIME_WS_PER_ADDRESS": str(CAP),
    "REALTIME_WS_CAP_HEARTBEAT_SECONDS": "0.5",
    "REALTIME_WS_CAP_STALE_SECONDS": "2",
}


@contextlib.asynccontextmanager
async def live(server: Server) -> AsyncIterator[Any]:
    """An open socket that has had its connect snapshot (so its process has counted it)."""
    async with websockets.connect(f"{server.ws}/v1/realtime") as ws:
        async with asyncio.timeout(10):
            assert json.loads(await ws.recv())["type"] == "leaderboard_update"
        yield ws


async def refused(server: Server) -> dict[str, Any]:
    with pytest.raises(InvalidStatus) as caught:
        async with websockets.connect(f"{server.ws}/v1/realtime"):
            pass
    response = caught.value.response
    assert response.status_code == 429
    assert response.headers["Content-Type"] == "application/json"
    body: dict[str, Any] = json.loads(response.body)
    return body


async def accepted_within(server: Server, seconds: float) -> bool:
    deadline = asyncio.get_running_loop().time() + seconds
    while asyncio.get_running_loop().time() < deadline:
        try:
            async with live(server):
                return True
        except InvalidStatus:
            await asyncio.sleep(0.2)
    return False


async def test_the_cap_counts_one_address_across_two_processes(tmp_path: Path) -> None:
    with asgi_servers(2, tmp_path, CAP_ENV) as (a, b):
        async with contextlib.AsyncExitStack() as held:
            first = await held.enter_async_context(live(a))
            await held.enter_async_context(live(a))
            await held.enter_async_context(live(b))
            # Three open (two on A, one on B): a fourth is refused by either process.
            body = await refused(b)
            assert body["error"]["code"] == "too_many_connections"
            assert body["error"]["details"] == {"scope": "websocket_connections", "limit": CAP}
            await refused(a)
            # One closes on A: B lets a new one in.
            await first.close()
            assert await accepted_within(b, 5)


async def test_the_sockets_of_a_process_that_died_stop_counting(tmp_path: Path) -> None:
    with asgi_servers(2, tmp_path, CAP_ENV) as (a, b):
        async with contextlib.AsyncExitStack() as held:
            for _ in range(CAP):
                await held.enter_async_context(live(a))
            await refused(b)
            a.process.send_signal(signal.SIGKILL)  # no close, no release: only its heartbeat stops
            a.process.wait(timeout=10)
            await refused(b)  # still counted until its counts go stale (2 s here)...
            assert await accepted_within(b, 8)  # ...then B accepts again
            # A's three no longer count; B's own do, up to the cap.
            async with live(b), live(b), live(b):
                await refused(b)


@pytest.mark.parametrize("redis_url", ["", "redis://127.0.0.1:9399/3"], ids=["embedded", "redis-unreachable"])
async def test_without_a_usable_redis_each_process_caps_its_own_sockets(settings: Any, redis_url: str) -> None:
    """No Redis (the embedded default), or one that does not answer (nothing listens on 9399)."""
    from realtime.connection_cap import ConnectionCap

    settings.REDIS_URL = redis_url
    settings.REALTIME_WS_PER_ADDRESS = 2
    cap = ConnectionCap()
    try:
        assert [await cap.acquire("203.0.113.7") for _ in range(3)] == [True, True, False]
        assert await cap.acquire("203.0.113.8")  # another address has its own count
        await cap.release("203.0.113.7")
        assert await cap.acquire("203.0.113.7")
        assert dict(cap.local) == {"203.0.113.7": 2, "203.0.113.8": 1}
    finally:
        if cap._heartbeat is not None:
            cap._heartbeat.cancel()


@contextlib.asynccontextmanager
async def live_stream(server: Server) -> AsyncIterator[httpx.Response]:
    """An open SSE stream that has had its first snapshot (so its process has counted it)."""
    async with (
        httpx.AsyncClient(timeout=10) as client,
        client.stream("GET", f"{server.http}/v1/leaderboard/stream") as response,
    ):
        assert response.status_code == 200
        # Kept referenced while the stream is held: a line iterator left behind and collected
        # closes the connection (httpcore closes a response whose iteration was abandoned).
        lines = response.aiter_lines()
        async with asyncio.timeout(10):
            async for line in lines:
                if line.startswith("data:"):
                    break
        yield response
        del lines


async def stream_refused(server: Server) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.get(f"{server.http}/v1/leaderboard/stream")
    assert response.status_code == 429
    assert response.headers["Content-Type"] == "application/json"
    assert response.headers["Retry-After"]
    body: dict[str, Any] = response.json()
    return body


async def test_sse_streams_count_under_the_same_cap_as_websockets(tmp_path: Path) -> None:
    """An address cannot hold more than the cap open by mixing streams and sockets, across processes."""
    with asgi_servers(2, tmp_path, CAP_ENV) as (a, b):
        async with contextlib.AsyncExitStack() as held:
            stream = await held.enter_async_context(live_stream(a))
            await held.enter_async_context(live(a))
            await held.enter_async_context(live_stream(b))
            # Two streams and a socket open: a fourth of either kind is refused, by either process.
            body = await stream_refused(a)
            assert body["error"]["code"] == "too_many_connections"
            assert body["error"]["details"] == {"scope": "websocket_connections", "limit": CAP}
            await stream_refused(b)
            await refused(b)
            # The stream on A ends: its place is free again, for a socket on B.
            await stream.aclose()
            assert await accepted_within(b, 5)


async def test_other_http_requests_are_not_counted(tmp_path: Path) -> None:
    with asgi_servers(1, tmp_path, CAP_ENV) as (a,):
        async with live(a), live(a), live(a), httpx.AsyncClient(timeout=10) as client:
            for _ in range(CAP + 1):
                assert (await client.get(f"{a.http}/v1/leaderboard")).status_code == 200
