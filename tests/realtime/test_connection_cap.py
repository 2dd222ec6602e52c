"""The per-address cap on open WebSockets (realtime/connection_cap.py), shared by real uvicorn processes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

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
