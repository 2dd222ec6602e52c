"""Real uvicorn processes, many boards: a socket gets only the board it subscribed to, switching
works, and a process with the pre-framed writer off still delivers every frame (the ASGI send)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
import websockets
from django.conf import settings
from django.db import connections

from realtime.hub import board_channel
from scores import board_services
from tests.conftest import in_worker_thread
from tests.realtime.servers import Server, asgi_servers

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.postgres,
    pytest.mark.redis,
    pytest.mark.slow,
]

RECEIVE_TIMEOUT = 10
OTHER = "rt-other"
SEQ_BASE = 9 * 10**15  # above any real seq: every socket takes these frames as new


def board_frame(board: str, seq: int) -> bytes:
    body = json.dumps({"type": "leaderboard_update", "seq": seq, "board": board, "leaderboard": []})
    return b"%s\n%d\n" % (board.encode(), seq) + body.encode()


async def publish(*frames: bytes) -> None:
    client = aioredis.Redis.from_url(settings.REDIS_URL)
    try:
        for data in frames:  # "<board>\n<seq>\n<json>": the board names its channel
            board, rest = data.split(b"\n", 1)
            await client.publish(board_channel(board.decode()), rest)
    finally:
        await client.aclose()


async def next_of(ws: Any, kind: str) -> dict[str, Any]:
    async with asyncio.timeout(RECEIVE_TIMEOUT):
        while True:
            msg = json.loads(await ws.recv())
            if msg["type"] == kind:
                return msg


async def updates_until(ws: Any, seq: int) -> list[dict[str, Any]]:
    """Every leaderboard_update up to and including the one with ``seq``."""
    seen: list[dict[str, Any]] = []
    async with asyncio.timeout(RECEIVE_TIMEOUT):
        while not seen or seen[-1]["seq"] != seq:
            msg = json.loads(await ws.recv())
            if msg["type"] == "leaderboard_update":
                seen.append(msg)
    return seen


async def subscribe(ws: Any, board: str) -> dict[str, Any]:
    """Subscribe (retrying while the server's 5 s board cache has not seen a new board yet); returns
    the board's snapshot."""
    async with asyncio.timeout(RECEIVE_TIMEOUT):
        while True:
            await ws.send(json.dumps({"type": "subscribe", "board": board}))
            while (reply := json.loads(await ws.recv()))["type"] not in ("subscribed", "error"):
                pass
            if reply["type"] == "subscribed":
                assert reply["board"] == board
                return await next_of(ws, "leaderboard_update")
            await asyncio.sleep(0.5)


def _create_board() -> None:
    try:
        board_services.board_create(board_id=OTHER, title="Other")
    finally:
        connections.close_all()


async def test_a_socket_gets_only_its_board_and_can_switch(servers):
    await in_worker_thread(_create_board)()
    process = servers[0]
    async with (
        websockets.connect(f"{process.ws}/v1/realtime") as on_global,
        websockets.connect(f"{process.ws}/v1/realtime") as on_other,
    ):
        assert (await next_of(on_global, "leaderboard_update"))["board"] == "global"
        assert (await next_of(on_other, "leaderboard_update"))["board"] == "global"
        assert (await subscribe(on_other, OTHER))["board"] == OTHER

        await publish(*(board_frame(b, SEQ_BASE + i) for i, b in enumerate(["global", OTHER] * 5)))
        # Each ends on its board's last frame, and saw nothing of the other board on the way.
        got_global = await updates_until(on_global, SEQ_BASE + 8)
        got_other = await updates_until(on_other, SEQ_BASE + 9)
        assert {m["board"] for m in got_global} == {"global"}
        assert {m["board"] for m in got_other} == {OTHER}

        # Back to the global board: its snapshot, then only global frames.
        assert (await subscribe(on_other, "global"))["board"] == "global"
        await publish(board_frame(OTHER, SEQ_BASE + 10), board_frame("global", SEQ_BASE + 11))
        assert [m["board"] for m in await updates_until(on_other, SEQ_BASE + 11)] == ["global"]


@pytest.fixture(scope="module")
def writer_off(django_db_setup: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Path]]:
    log_dir = tmp_path_factory.mktemp("asgi-writer-off")
    with asgi_servers(1, log_dir, {"REALTIME_PREFRAMED_WRITES": "false"}) as running:
        yield running[0], log_dir / "server-0.log"


async def test_with_the_pre_framed_writer_off_every_frame_still_arrives(writer_off):
    server, log = writer_off
    async with websockets.connect(f"{server.ws}/v1/realtime") as ws:
        await next_of(ws, "leaderboard_update")
        for i in range(20):  # in lockstep: none may be coalesced away
            await publish(board_frame("global", SEQ_BASE + i))
            assert (await next_of(ws, "leaderboard_update"))["seq"] == SEQ_BASE + i
    # The process said once, at start, that it uses the ASGI send.
    assert log.read_text().count("pushed frames take the ASGI send") == 1


def subscribers(channel: bytes) -> int:
    """How many connections (the processes' hubs) subscribe to ``channel`` now."""
    import redis as redis_lib

    client = redis_lib.Redis.from_url(settings.REDIS_URL)
    try:
        return dict(client.pubsub_numsub(channel)).get(channel, 0)
    finally:
        client.close()


async def test_a_process_subscribes_to_a_boards_channel_only_while_one_of_its_sockets_watches_it(servers):
    """A publish of a board costs the processes with no socket on it nothing: they never hear it."""
    await in_worker_thread(_create_board)()
    assert subscribers(board_channel(OTHER)) == 0
    async with websockets.connect(f"{servers[0].ws}/v1/realtime") as ws:
        assert (await next_of(ws, "leaderboard_update"))["board"] == "global"
        assert subscribers(board_channel(OTHER)) == 0  # nobody watches it yet
        await subscribe(ws, OTHER)
        assert subscribers(board_channel(OTHER)) == 1  # confirmed before its snapshot was read
        await subscribe(ws, "global")
        async with asyncio.timeout(RECEIVE_TIMEOUT):
            while subscribers(board_channel(OTHER)) != 0:  # its last socket left: unsubscribed
                await asyncio.sleep(0.05)
