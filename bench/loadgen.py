"""Open-loop HTTP/1.1 load generator (asyncio + uvloop), one process, many keep-alive connections.

Arrivals are scheduled at a fixed rate *before* the run (t_i = start + i / rate); each request's
latency is measured from its scheduled send time, so a slow server cannot slow the generator down
and hide its own queueing (no coordinated omission). Requests are pre-built bytes; the client
writes them and parses only the status line, headers and body length.

Input: a JSON spec on argv[1]:
    {"host": "127.0.0.1", "port": 8500, "duration": 5.0,
     "streams": [{"name": "update", "rate": 1000, "connections": 256, "requests_file": "...bin"},
                 {"name": "read", "rate": 100, "connections": 16, "request": "GET / HTTP/1.1\\r\\n..."}]}
``requests_file`` holds length-prefixed (4 bytes, big endian) requests, used in order, once each.
A stream with ``"record_sent": true`` (score updates) also records, for every 2xx answer, the
epoch time in ms at which its bytes were written and the answer's ``user_id`` and ``new_score``
(``sent``: what bench/wsclients.py matches the live frames against: POST sent -> frame received).
Output (argv[2]): per stream, latencies in ms of answered requests, status counts, errors, the
number sent and the rate that was actually achieved.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import struct
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LENGTH = struct.Struct(">I")
CONNECT_TIMEOUT = 5.0
# A request still unanswered this long after the run ends is counted as a timeout error.
DRAIN_SECONDS = 10.0


def read_requests(path: str) -> list[bytes]:
    data = Path(path).read_bytes()
    out: list[bytes] = []
    pos = 0
    while pos < len(data):
        (size,) = LENGTH.unpack_from(data, pos)
        pos += LENGTH.size
        out.append(data[pos : pos + size])
        pos += size
    return out


def write_requests(path: str, requests: list[bytes]) -> None:
    with open(path, "wb") as fh:
        for request in requests:
            fh.write(LENGTH.pack(len(request)))
            fh.write(request)


@dataclass
class StreamResult:
    name: str
    rate: float
    scheduled: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    statuses: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    samples: dict[str, str] = field(default_factory=dict)  # first body seen per non-2xx status
    first_send: float = 0.0
    last_done: float = 0.0
    record_sent: bool = False
    sent: list[tuple[float, str, int]] = field(default_factory=list)

    def status(self, code: int) -> None:
        key = str(code)
        self.statuses[key] = self.statuses.get(key, 0) + 1

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bool, bytes]:
    """Read one response; returns (status, keep_alive, body; chunked bodies are not kept)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length = 0
    chunked = False
    keep_alive = True
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        lname = name.strip().lower()
        if lname == b"content-length":
            length = int(value.strip())
        elif lname == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
        elif lname == b"connection" and b"close" in value.lower():
            keep_alive = False
    body = b""
    if chunked:
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip().split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    elif length:
        body = await reader.readexactly(length)
    return status, keep_alive, body


def update_answer(body: bytes, board: str = "global") -> tuple[str, int]:
    """A score update's answer -> (user id, the player's new score on ``board``, else overall)."""
    data = json.loads(body)
    data = data.get("data", data)  # the API's success envelope
    score = next((b["new_score"] for b in data.get("boards") or () if b.get("board") == board), data["new_score"])
    return str(data["user_id"]), int(score)


class _Connection:
    """One keep-alive HTTP/1.1 connection: opened on first use, reopened after a close or an error."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def exchange(self, request: bytes, result: StreamResult, started: float) -> None:
        """Send one request and record its status and its latency counted from ``started``."""
        try:
            if self.writer is None or self.reader is None:
                reader, writer = await asyncio.wait_for(asyncio.open_connection(self.host, self.port), CONNECT_TIMEOUT)
                self.reader, self.writer = reader, writer
            else:
                reader, writer = self.reader, self.writer
            sent_ms = time.time() * 1000.0
            writer.write(request)
            status, keep_alive, body = await read_response(reader)
            if result.record_sent and 200 <= status < 300:
                result.sent.append((sent_ms, *update_answer(body)))
            if status >= 300 and str(status) not in result.samples:
                result.samples[str(status)] = body[:300].decode(errors="replace")
            done = time.perf_counter()
            result.latencies_ms.append((done - started) * 1000.0)
            result.last_done = max(result.last_done, done)
            result.status(status)
            if not keep_alive:
                self._drop()
        except (
            OSError,
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
            TimeoutError,
            ValueError,
            KeyError,
        ) as exc:
            result.error(type(exc).__name__)
            self._drop()

    def _drop(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None

    async def close(self, *, wait: bool) -> None:
        writer = self.writer
        self._drop()
        if writer is not None and wait:
            with contextlib.suppress(OSError):
                await writer.wait_closed()


async def worker(host: str, port: int, queue: asyncio.Queue[tuple[float, bytes] | None], result: StreamResult) -> None:
    """Open loop: latency counts from each request's scheduled send time."""
    connection = _Connection(host, port)
    while (item := await queue.get()) is not None:
        scheduled, request = item
        await connection.exchange(request, result, scheduled)
    await connection.close(wait=True)


async def closed_worker(host: str, port: int, request: bytes, deadline: float, result: StreamResult) -> None:
    """Closed loop (throughput only): send, wait for the answer, send again until the deadline."""
    connection = _Connection(host, port)
    while time.perf_counter() < deadline:
        result.scheduled += 1
        await connection.exchange(request, result, time.perf_counter())
    await connection.close(wait=False)


async def dispatch(
    start: float, rate: float, requests: list[bytes], queue: asyncio.Queue[tuple[float, bytes] | None]
) -> None:
    interval = 1.0 / rate
    for i, request in enumerate(requests):
        scheduled = start + i * interval
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        queue.put_nowait((scheduled, request))


async def run(spec: dict[str, Any]) -> dict[str, Any]:
    host, port, duration = spec["host"], int(spec["port"]), float(spec["duration"])
    start = time.perf_counter() + 0.2
    tasks: list[asyncio.Task[None]] = []
    results: list[StreamResult] = []
    queues: list[tuple[asyncio.Queue[tuple[float, bytes] | None], int]] = []
    dispatchers = []
    for stream in spec["streams"]:
        if stream.get("closed"):
            result = StreamResult(name=stream["name"], rate=0.0, first_send=start)
            results.append(result)
            deadline = start + duration
            request = stream["request"].encode()
            tasks += [
                asyncio.create_task(closed_worker(host, port, request, deadline, result))
                for _ in range(int(stream.get("connections", 64)))
            ]
            continue
        rate = float(stream["rate"])
        count = int(rate * duration)
        if "requests_file" in stream:
            requests = read_requests(stream["requests_file"])[:count]
        else:
            requests = [stream["request"].encode()] * count
        result = StreamResult(
            name=stream["name"],
            rate=rate,
            scheduled=len(requests),
            first_send=start,
            record_sent=bool(stream.get("record_sent")),
        )
        results.append(result)
        queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()
        conns = int(stream.get("connections", 64))
        queues.append((queue, conns))
        tasks += [asyncio.create_task(worker(host, port, queue, result)) for _ in range(conns)]
        dispatchers.append(asyncio.create_task(dispatch(start, rate, requests, queue)))
    await asyncio.gather(*dispatchers)
    for queue, conns in queues:
        for _ in range(conns):
            queue.put_nowait(None)
    _, pending = await asyncio.wait(tasks, timeout=DRAIN_SECONDS)
    for task in pending:
        task.cancel()
    out = []
    for result in results:
        answered = len(result.latencies_ms) + sum(result.errors.values())
        if answered < result.scheduled:
            result.errors["timeout"] = result.scheduled - answered
        elapsed = max(result.last_done - result.first_send, 1e-9)
        ok = sum(n for code, n in result.statuses.items() if code.startswith("2"))
        out.append(
            {
                "name": result.name,
                "rate": result.rate,
                "scheduled": result.scheduled,
                "ok": ok,
                "achieved_per_s": ok / elapsed,
                "statuses": result.statuses,
                "errors": result.errors,
                "samples": result.samples,
                "latencies_ms": result.latencies_ms,
                **({"sent": result.sent} if result.record_sent else {}),
            }
        )
    return {"duration": duration, "streams": out}


def main() -> None:
    spec = json.loads(Path(sys.argv[1]).read_text())
    import uvloop  # comes with uvicorn[standard]

    result = uvloop.run(run(spec))
    Path(sys.argv[2]).write_text(json.dumps(result))


if __name__ == "__main__":
    main()
