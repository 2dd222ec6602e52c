"""One WebSocket client process of the delivery benchmark: N sockets, minimal per-frame work.

A hand-rolled RFC 6455 client on raw asyncio protocols (no per-socket task), so 5,000 sockets cost
the client little CPU. Each text frame's ``"published_at":<epoch ms>`` is compared with this
process's clock (same machine, same clock) to get the delivery latency.

Protocol with the orchestrator: connects every socket (with ``--wait-first-frame``, also waits for
its first text frame: the app's connect snapshot, so that no connect backlog is measured as
delivery latency), prints ``ready <n_ready>``, waits for ``go`` on stdin, records for
``--duration`` seconds, writes the JSON result and exits.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import sys
import time
from array import array
from pathlib import Path
from typing import Any

from bench.topology import raise_nofile

PUBLISHED = b'"published_at":'
CONNECT_CONCURRENCY = 200
OPEN_TIMEOUT = 30.0


class Stats:
    def __init__(self) -> None:
        self.recording = False
        self.latencies = array("d")
        self.frames = 0
        self.closed = 0


class WsClient(asyncio.Protocol):
    def __init__(
        self, host: str, path: str, stats: Stats, opened: asyncio.Future[bool], first: asyncio.Future[bool]
    ) -> None:
        self.stats = stats
        self.opened = opened
        self.first = first
        self.buf = b""
        self.upgraded = False
        self.transport: Any = None  # uvloop's transports are not asyncio.Transport subclasses
        key = base64.b64encode(os.urandom(16)).decode()
        self.request = (
            f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nOrigin: http://{host}\r\n\r\n"
        ).encode()

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        transport.write(self.request)

    def connection_lost(self, exc: Exception | None) -> None:
        self.stats.closed += 1
        for pending in (self.opened, self.first):
            if not pending.done():
                pending.set_result(False)

    def data_received(self, data: bytes) -> None:
        now_ms = time.time() * 1000.0
        buf = self.buf + data if self.buf else data
        if not self.upgraded:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                self.buf = buf
                return
            ok = buf.startswith(b"HTTP/1.1 101")
            if not self.opened.done():
                self.opened.set_result(ok)
            if not ok and self.transport is not None:
                self.transport.close()
                return
            self.upgraded = True
            buf = buf[end + 4 :]
        pos = 0
        size = len(buf)
        while size - pos >= 2:
            b0, b1 = buf[pos], buf[pos + 1] & 0x7F
            head = 2
            if b1 == 126:
                if size - pos < 4:
                    break
                b1 = int.from_bytes(buf[pos + 2 : pos + 4], "big")
                head = 4
            elif b1 == 127:
                if size - pos < 10:
                    break
                b1 = int.from_bytes(buf[pos + 2 : pos + 10], "big")
                head = 10
            if size - pos < head + b1:
                break
            opcode = b0 & 0x0F
            payload_at = pos + head
            if opcode == 0x1 and not self.first.done():
                self.first.set_result(True)
            if opcode == 0x1 and self.stats.recording:
                found = buf.find(PUBLISHED, payload_at, payload_at + b1)
                if found >= 0:
                    start = found + len(PUBLISHED)
                    stop = start
                    while buf[stop] not in b",}":
                        stop += 1
                    self.stats.latencies.append(now_ms - float(buf[start:stop]))
                    self.stats.frames += 1
            elif opcode == 0x9 and self.transport is not None:  # ping -> masked pong (zero mask key)
                payload = buf[payload_at : payload_at + b1]
                self.transport.write(bytes([0x8A, 0x80 | len(payload)]) + b"\0\0\0\0" + payload)
            pos = payload_at + b1
        self.buf = buf[pos:] if pos < size else b""


async def run(args: argparse.Namespace) -> dict[str, object]:
    raise_nofile()
    loop = asyncio.get_running_loop()
    stats = Stats()
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
    transports: list[asyncio.BaseTransport] = []

    async def open_one(index: int) -> bool:
        async with gate:
            opened: asyncio.Future[bool] = loop.create_future()
            first: asyncio.Future[bool] = loop.create_future()
            # --connect: straight to the ASGI servers (round-robin), with the Host nginx would pass on.
            target = args.connect[index % len(args.connect)] if args.connect else f"{args.host}:{args.port}"
            host = args.host if args.connect else target
            try:
                if target.startswith("unix:"):
                    transport, _ = await loop.create_unix_connection(
                        lambda: WsClient(host, args.path, stats, opened, first), target[5:]
                    )
                else:
                    address, _, port = target.rpartition(":")
                    transport, _ = await loop.create_connection(
                        lambda: WsClient(host, args.path, stats, opened, first), address, int(port)
                    )
            except OSError:
                return False
            transports.append(transport)
            try:
                if not await asyncio.wait_for(opened, OPEN_TIMEOUT):
                    return False
            except TimeoutError:
                return False
        if not args.wait_first_frame:
            return True
        try:  # outside the connect gate: the snapshot read may queue behind other sockets' reads
            return await asyncio.wait_for(first, OPEN_TIMEOUT)
        except TimeoutError:
            return False

    started = time.perf_counter()
    results = await asyncio.gather(*(open_one(i) for i in range(args.count)))
    connected = sum(results)
    print(f"ready {connected} {time.perf_counter() - started:.2f}", flush=True)
    await loop.run_in_executor(None, sys.stdin.readline)
    stats.recording = True
    await asyncio.sleep(args.duration)
    stats.recording = False
    alive = connected - stats.closed
    for transport in transports:
        transport.close()
    return {
        "connected": connected,
        "alive_at_end": alive,
        "frames": stats.frames,
        "latencies_ms": list(stats.latencies),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=80)
    parser.add_argument(
        "--connect",
        action="append",
        default=[],
        help="host:port or unix:PATH to connect to instead of --host/--port (repeatable; round-robin)",
    )
    parser.add_argument("--path", default="/v1/realtime")
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--duration", type=float, required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--wait-first-frame", action="store_true", help="ready only once each socket had a frame")
    args = parser.parse_args()
    import uvloop

    result = uvloop.run(run(args))
    Path(args.out).write_text(json.dumps(result))


if __name__ == "__main__":
    main()
