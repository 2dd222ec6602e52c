"""A real uvicorn process with a client that stops reading: the others get every snapshot, and the
stalled one, once it reads again, resumes from the newest snapshot instead of the whole backlog."""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any

import pytest
import redis.asyncio as aioredis
import websockets
from django.conf import settings

from realtime.frames import LEADERBOARD_UPDATE, Frame
from realtime.hub import Mailbox, board_channel
from realtime.wire import SERVER_SEND, raw_writer
from tests.realtime.test_wire import uvicorn_server

FRAMES = 200
PAD = "x" * 60_000  # 200 frames of 60 KB: far more than the socket buffers of a client that stopped reading
SEQ_BASE = 9 * 10**15  # above any real seq, so every socket takes these frames as new
RECEIVE_TIMEOUT = 20


def frame(seq: int) -> bytes:
    body = json.dumps({"type": "leaderboard_update", "seq": seq, "pad": PAD})
    return b"%d\n" % seq + body.encode()  # as published on the global board's channel


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


@pytest.mark.django_db(transaction=True)
@pytest.mark.redis
@pytest.mark.slow
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
                    await publisher.publish(board_channel("global"), frame(SEQ_BASE + i))
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


# -- a client that never reads: the server's buffers stay bounded --------------------------------
NEVER_READ_FRAMES = 300


@pytest.mark.embedded
@pytest.mark.parametrize("preframed", [True, False], ids=["pre-framed", "asgi-send"])
async def test_a_client_that_never_reads_never_grows_the_server_buffers(preframed):
    """Hundreds of 60 KB frames to a socket whose client never reads: the server's transport buffer
    stays under its high-water mark plus one frame, the mailbox holds one snapshot, the rest are
    skipped, and the socket still closes cleanly."""
    seen: dict[str, Any] = {"buffered": [], "pending": []}
    done = asyncio.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        protocol = scope[SERVER_SEND].__self__
        transport = protocol.transport
        transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        box = Mailbox("global")
        box.start_push(send, raw_writer(scope[SERVER_SEND]) if preframed else None)
        for seq in range(1, NEVER_READ_FRAMES + 1):
            box.offer(Frame(LEADERBOARD_UPDATE, seq, frame(seq).split(b"\n", 1)[1]))
            await asyncio.sleep(0)  # the loop runs: flow control, the slow socket's own task
            seen["buffered"].append(transport.get_write_buffer_size())
            seen["pending"].append(int(box._snapshot is not None))
        seen["high_water"] = transport.get_write_buffer_limits()[1]
        seen["skipped"] = box.skipped
        box.stop_push()
        done.set()
        await send({"type": "websocket.close", "code": 1000})

    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    async with uvicorn_server(app, deflate=False) as port:
        loop = asyncio.get_running_loop()
        await loop.sock_connect(sock, ("127.0.0.1", port))
        await loop.sock_sendall(
            sock,
            b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        )
        async with asyncio.timeout(RECEIVE_TIMEOUT):
            await done.wait()  # never a byte read from the socket
        sock.close()
    frame_size = len(frame(NEVER_READ_FRAMES)) + 16
    assert max(seen["buffered"]) <= seen["high_water"] + frame_size
    assert max(seen["pending"]) == 1
    assert seen["skipped"] >= NEVER_READ_FRAMES - 50  # nearly all: the client could hold only a few
