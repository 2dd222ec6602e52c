"""A real uvicorn process with a client that stops reading: the others get every snapshot, and the
stalled one, once it reads again, resumes from the newest snapshot instead of the whole backlog."""

from __future__ import annotations

import asyncio
import json
import socket

import pytest
import redis.asyncio as aioredis
import websockets
from django.conf import settings

from realtime.hub import board_channel

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.redis, pytest.mark.slow]

FRAMES = 200
PAD = "x" * 60_000  # 200 frames of 60 KB: far more than the socket buffers of a client that stopped reading
SEQ_BASE = 9 * 10**15  # above any real seq, so every socket takes these frames as new
RECEIVE_TIMEOUT = 20


def frame(seq: int) -> bytes:
    body = json.dumps({"type": "leaderboard_update", "seq": seq, "pad": PAD})
    return b"global\n%d\n" % seq + body.encode()


async def open_stalled(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A WebSocket client that reads nothing after the handshake (a small receive buffer, so it fills up)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    # A small stream limit: asyncio stops reading the socket once that much waits unread.
    reader, writer = await asyncio.open_connection(sock=sock, limit=2**16)
    writer.write(
        b"GET /v1/realtime HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101"), head
    return reader, writer


async def read_text(reader: asyncio.StreamReader) -> str:
    """One unfragmented server frame (the server does not mask); pings are skipped."""
    while True:
        first, second = await reader.readexactly(2)
        size = second & 0x7F
        if size == 126:
            size = int.from_bytes(await reader.readexactly(2), "big")
        elif size == 127:
            size = int.from_bytes(await reader.readexactly(8), "big")
        payload = await reader.readexactly(size)
        if first & 0x0F == 0x1:
            return payload.decode()


async def test_a_stalled_client_skips_to_the_newest_snapshot_and_delays_nobody(servers):
    server = servers[0]
    reader, writer = await open_stalled(server.port)
    await read_text(reader)  # the snapshot on connect
    async with websockets.connect(f"{server.ws}/v1/realtime", max_size=None, compression=None) as live:
        await live.recv()  # its snapshot on connect
        # In lockstep: each frame is published once the live client has the previous one, so the
        # live client never falls behind itself; were the stalled socket holding things up, this
        # loop would stall with it.
        publisher = aioredis.Redis.from_url(settings.REDIS_URL)
        try:
            async with asyncio.timeout(RECEIVE_TIMEOUT):
                for i in range(FRAMES):
                    await publisher.publish(board_channel(), frame(SEQ_BASE + i))
                    assert json.loads(await live.recv())["seq"] == SEQ_BASE + i
        finally:
            await publisher.aclose()

    stalled: list[int] = []
    async with asyncio.timeout(RECEIVE_TIMEOUT):
        while not stalled or stalled[-1] != FRAMES - 1:
            stalled.append(json.loads(await read_text(reader))["seq"] - SEQ_BASE)
    assert stalled == sorted(set(stalled))  # in order, no repeats
    assert len(stalled) < FRAMES  # it skipped what it had no room for, and ends on the newest
    writer.close()
