"""Fan-out measurement: the hub (one Redis subscription per process) against channels' group_send.

    REDIS_URL=redis://127.0.0.1:6379/1 .venv/bin/python -m realtime.bench_fanout --clients 1000 2000

For each design it starts one uvicorn process serving this module's ASGI app (``--ws`` as
deploy/serve.py runs it, uvloop, httptools, no compression), connects N local WebSocket clients
(a minimal client without a task per socket, so the driver's own cost stays small), publishes
``--messages`` 1 KB board frames (``published_at`` = publish time, epoch ms) and reports: the
median time until the first client had a frame, the p50/p95 over every (client, frame) delivery,
the slowest complete delivery, the server's CPU time per frame (``/proc``), its resident
memory per open socket and (``greet ms``) how long after the last handshake every hub socket had
its connect snapshot; frames are published only after that. ``--designs hub bare`` compares the
production path with its floor only.

- ``hub``: the production path (``/v1/realtime``): a PUBLISH on ``sb:rt:board``, one pub/sub
  message per process, handed to each socket's mailbox.
- ``bare``: the floor for the same path — a plain ``websockets`` server subscribed to the same
  Redis channel that calls ``websockets.broadcast`` (no Django, no channels, no mailboxes).
- ``group-core`` / ``group-pubsub``: a consumer per socket in a channels group
  (``channels_redis.core.RedisChannelLayer`` / ``channels_redis.pubsub.RedisPubSubChannelLayer``),
  fed by ``group_send`` — every message is copied per member and dispatched per consumer.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
GROUP = "bench-board"
# channels_redis' core layer runs out of pooled connections when hundreds of group_add run at once.
CONNECT_BATCH = 50
LAYERS = {
    "group-core": "channels_redis.core.RedisChannelLayer",
    "group-pubsub": "channels_redis.pubsub.RedisPubSubChannelLayer",
}


# redis-py's asyncio pools stop at 100 connections by default, which the core layer outgrows with a
# few hundred consumers in one process; the benchmark gives it room so it is measured, not crashed.
LAYER_MAX_CONNECTIONS = 5000


def _layer_hosts() -> list[dict[str, Any]]:
    return [{"address": os.environ["REDIS_URL"], "max_connections": LAYER_MAX_CONNECTIONS}]


def _layer_config(backend: str) -> dict[str, Any]:
    return {"BACKEND": backend, "CONFIG": {"hosts": _layer_hosts(), "prefix": "sb:bench", "capacity": 1000}}


# --------------------------------------------------------------------------------------------
# Server side: the real application plus a group-based consumer on /bench/group
# --------------------------------------------------------------------------------------------
def _application() -> Any:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "scoreboard.settings")
    from django.conf import settings

    from scoreboard.asgi import application as real_app

    layer = os.environ.get("BENCH_LAYER", "group-core")
    settings.CHANNEL_LAYERS = {**settings.CHANNEL_LAYERS, "bench": _layer_config(LAYERS[layer])}

    from channels.generic.websocket import AsyncWebsocketConsumer
    from channels.routing import ProtocolTypeRouter, URLRouter
    from django.urls import path

    from realtime.routing import websocket_urlpatterns

    class GroupBoardConsumer(AsyncWebsocketConsumer):
        channel_layer_alias = "bench"

        async def connect(self) -> None:
            await self.channel_layer.group_add(GROUP, self.channel_name)
            await self.accept()

        async def disconnect(self, code: int) -> None:
            await self.channel_layer.group_discard(GROUP, self.channel_name)

        async def board_frame(self, event: dict[str, Any]) -> None:
            await self.send(text_data=event["text"])

    return ProtocolTypeRouter(
        {
            "http": real_app,
            "websocket": URLRouter([*websocket_urlpatterns, path("bench/group", GroupBoardConsumer.as_asgi())]),
        }
    )


def __getattr__(name: str) -> Any:
    # ``uvicorn realtime.bench_fanout:application`` builds the app lazily (Django set up first).
    if name == "application":
        return _application()
    raise AttributeError(name)


# --------------------------------------------------------------------------------------------
# Driver side
# --------------------------------------------------------------------------------------------
def _frame(seq: int) -> str:
    import orjson

    body = {
        "type": "leaderboard_update",
        "seq": seq,
        "published_at": round(time.time() * 1000, 3),
        "pad": "x" * 900,
    }
    return orjson.dumps(body).decode()


async def _publish(design: str, seq: int, layer: Any, redis: Any) -> None:
    if design in ("hub", "bare"):
        from realtime.hub import board_channel

        await redis.publish(board_channel("global"), b"%d\n" % seq + _frame(seq).encode())
    else:
        await layer.group_send(GROUP, {"type": "board.frame", "text": _frame(seq)})


class _Client(asyncio.Protocol):
    """A minimal RFC 6455 client (no task per socket), so the driver's own cost stays small beside the
    server's; it answers the server's pings and hands every text frame to ``on_text``."""

    def __init__(self, host: str, path: str, on_text: Any, opened: asyncio.Future[bool]) -> None:
        self.request = (
            f"GET /{path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
        self.on_text = on_text
        self.opened = opened
        self.buffer = bytearray()
        self.upgraded = False
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        transport.write(self.request)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            self.opened.set_result(False)

    def data_received(self, data: bytes) -> None:
        buf = self.buffer
        buf += data
        if not self.upgraded:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            self.upgraded = buf.startswith(b"HTTP/1.1 101")
            del buf[: end + 4]
            if not self.opened.done():
                self.opened.set_result(self.upgraded)
        while len(buf) >= 2:
            size, head = buf[1] & 0x7F, 2
            if size == 126:
                if len(buf) < 4:
                    return
                size, head = int.from_bytes(buf[2:4], "big"), 4
            elif size == 127:
                if len(buf) < 10:
                    return
                size, head = int.from_bytes(buf[2:10], "big"), 10
            if len(buf) < head + size:
                return
            opcode, payload = buf[0] & 0x0F, bytes(buf[head : head + size])
            del buf[: head + size]
            if opcode == 0x1:
                self.on_text(payload)
            elif opcode == 0x9 and size < 126:  # ping: a masked pong (zero mask) with the same payload
                self.transport.write(bytes([0x8A, 0x80 | size, 0, 0, 0, 0]) + payload)


def _rss_kb(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(status.split("VmRSS:", 1)[1].split()[0])


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _run(design: str, clients: int, messages: int, port: int, server_pid: int) -> dict[str, float]:
    import orjson
    import redis.asyncio as aioredis

    path = {"hub": "v1/realtime", "bare": ""}.get(design, "bench/group")
    received: dict[int, list[float]] = {}
    ready = asyncio.Event()
    greeted = 0  # sockets that had the snapshot the hub sends on connect
    all_greeted = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_text(raw: bytes) -> None:
        nonlocal greeted
        now = time.time() * 1000
        if b'"pad"' not in raw:
            greeted += 1
            if greeted == clients:
                all_greeted.set()
            return
        msg = orjson.loads(raw)
        got = received.setdefault(msg["seq"], [])
        got.append(now - msg["published_at"])
        if len(got) == clients:
            ready.set()

    async def connect() -> Any:
        opened: asyncio.Future[bool] = loop.create_future()
        transport, _ = await loop.create_connection(
            lambda: _Client(f"127.0.0.1:{port}", path, on_text, opened), "127.0.0.1", port
        )
        if not await opened:
            raise RuntimeError("the WebSocket handshake failed")
        return transport

    # The first socket sets up what every later one shares (the hub, Django, ...): not per-socket memory.
    transports: list[Any] = [await connect()]
    await asyncio.sleep(0.5)
    rss_before = _rss_kb(server_pid)
    for start in range(1, clients, CONNECT_BATCH):
        count = min(clients, start + CONNECT_BATCH) - start
        transports.extend(await asyncio.gather(*(connect() for _ in range(count))))
    handshakes_done = time.perf_counter()
    if design == "hub":
        # Until every socket had its connect snapshot the server is still busy with the connections
        # (each fetches a snapshot), which is neither delivery latency nor fan-out CPU.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(60):
                await all_greeted.wait()
    greet_ms = 1000 * (time.perf_counter() - handshakes_done) if all_greeted.is_set() else float("nan")
    await asyncio.sleep(1.0)
    rss_per_socket = (_rss_kb(server_pid) - rss_before) / max(1, clients - 1)

    layer = None
    if design.startswith("group"):
        from channels_redis.core import RedisChannelLayer
        from channels_redis.pubsub import RedisPubSubChannelLayer

        cls = RedisChannelLayer if design == "group-core" else RedisPubSubChannelLayer
        layer = cls(hosts=_layer_hosts(), prefix="sb:bench", capacity=1000)
    redis = aioredis.Redis.from_url(os.environ["REDIS_URL"])
    firsts, lasts, reach, every = [], [], [], []
    cpu_before = _cpu_seconds(server_pid)
    for i in range(messages):
        seq = 9 * 10**15 + i  # above any real seq (epoch µs), so no mailbox takes it for an old frame
        ready.clear()
        await _publish(design, seq, layer, redis)
        try:
            async with asyncio.timeout(10):
                await ready.wait()
        except TimeoutError:
            pass
        got = received.get(seq, [])
        reach.append(len(got) / clients)
        every.extend(got)
        if got:
            firsts.append(min(got))
            lasts.append(max(got) if len(got) == clients else float("inf"))
        await asyncio.sleep(0.2)
    cpu = _cpu_seconds(server_pid) - cpu_before
    for transport in transports:
        transport.close()
    await redis.aclose()
    complete = [x for x in lasts if x != float("inf")]
    every.sort()
    return {
        "first_p50": statistics.median(firsts) if firsts else float("nan"),
        "all_p50": statistics.median(every) if every else float("nan"),
        "all_p95": every[int(0.95 * (len(every) - 1))] if every else float("nan"),
        "last_max": max(complete) if complete else float("nan"),
        "cpu_ms": 1000 * cpu / messages,
        "rss_kb": rss_per_socket,
        "greet_ms": greet_ms,
        "incomplete": float(len(lasts) - len(complete) + messages - len(lasts)),
        "reach": statistics.mean(reach) if reach else 0.0,
    }


async def _bare_server(port: int) -> None:
    import redis.asyncio as aioredis
    from websockets.asyncio.server import ServerConnection, broadcast, serve

    from realtime.hub import board_channel

    clients: set[ServerConnection] = set()

    async def handler(ws: ServerConnection) -> None:
        clients.add(ws)
        try:
            await ws.wait_closed()
        finally:
            clients.discard(ws)

    pubsub = aioredis.Redis.from_url(os.environ["REDIS_URL"]).pubsub(ignore_subscribe_messages=True)
    await pubsub.subscribe(board_channel("global"))
    async with serve(handler, "127.0.0.1", port, backlog=4096, compression=None):
        async for message in pubsub.listen():
            broadcast(clients, message["data"].split(b"\n", 1)[1].decode())


def _serve(design: str, port: int, log: Path, ws: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "BENCH_LAYER": design if design.startswith("group") else "group-core", "LOG_LEVEL": "WARNING"}
    argv = [
        sys.executable,
        "-m",
        "uvicorn",
        "realtime.bench_fanout:application",
        "--host=127.0.0.1",
        f"--port={port}",
        "--lifespan=off",
        "--no-access-log",
        "--backlog=4096",
        # As deploy/serve.py runs it (compression off: the clients here do not ask for it anyway).
        "--loop=uvloop",
        "--http=httptools",
        f"--ws={ws}",
        "--ws-per-message-deflate=false",
    ]
    if design == "bare":
        argv = [sys.executable, "-m", "realtime.bench_fanout", "--serve-bare", str(port)]
    process = subprocess.Popen(  # noqa: S603 - fixed argv
        argv,
        cwd=ROOT,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"the server exited; see {log}")
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return process
        time.sleep(0.2)
    process.terminate()
    sys.exit(f"the server did not start; see {log}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, nargs="+", default=[1000, 2000])
    parser.add_argument("--messages", type=int, default=20)
    parser.add_argument("--designs", nargs="+", default=["bare", "hub", "group-core", "group-pubsub"])
    parser.add_argument("--port", type=int, default=8190)
    parser.add_argument(
        "--ws", default="websockets-sansio", help="uvicorn's --ws for the ASGI designs, as deploy/serve.py"
    )
    parser.add_argument("--serve-bare", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not os.environ.get("REDIS_URL"):
        sys.exit("set REDIS_URL (the designs compared all go through Redis)")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "scoreboard.settings")
    import django

    django.setup()
    if args.serve_bare:
        asyncio.run(_bare_server(args.serve_bare))
        return
    print(
        f"{'design':<14}{'clients':>8}{'first p50':>10}{'p50 ms':>8}{'p95 ms':>8}{'last max':>9}"
        f"{'cpu ms/msg':>11}{'KB/socket':>10}{'greet ms':>9}{'incomplete':>11}{'reached':>9}"
    )
    import uvloop

    for clients in args.clients:
        for design in args.designs:
            server = _serve(design, args.port, Path(tempfile.gettempdir()) / f"bench_fanout_{design}.log", args.ws)
            try:
                with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                    r = runner.run(_run(design, clients, args.messages, args.port, server.pid))
            finally:
                server.terminate()
                try:
                    server.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    server.kill()
                    server.wait()
            print(
                f"{design:<14}{clients:>8}{r['first_p50']:>10.1f}{r['all_p50']:>8.1f}{r['all_p95']:>8.1f}"
                f"{r['last_max']:>9.1f}{r['cpu_ms']:>11.1f}{r['rss_kb']:>10.1f}{r['greet_ms']:>9.0f}{int(r['incomplete']):>11}{r['reach']:>9.0%}",
                flush=True,
            )


if __name__ == "__main__":
    main()
