"""One WebSocket client process of the delivery benchmark: N sockets, minimal per-frame work.

A hand-rolled RFC 6455 client on raw non-blocking sockets (one reader callback per socket, no task),
so 5,000 sockets cost the client little CPU.

**When a frame arrived** is the kernel's receive timestamp (``SO_TIMESTAMPNS``, CLOCK_REALTIME, read
with each ``recvmsg``), not the moment this process got round to reading it: on a small box the
load generator's own scheduling delay would otherwise count against the server (and more against
whichever server makes the box busiest). On loopback the stamp is taken when the sender's write
reaches the receive queue. The app and the bare ``websockets`` baseline are measured the same way;
``client_lag_ms`` reports how far behind the kernel this process read (the delay kept out).
The stamp cannot keep out the CPU the client processes take from the servers on a shared box;
``--nice`` (``BENCH_CLIENT_NICE`` in bench/run.py, app and bare alike) lets the servers go first.

**Latency from what.** Two references, reported side by side:

- ``latencies_ms`` (app, after ``match PATH``): from the moment the score update's POST was *sent*
  (``bench/loadgen.py``'s ``record_sent``: the time its bytes were written) to the arrival of the
  first frame, at this socket, whose top 10 shows that update (its player at its new score). A
  POST whose update never shows in a recorded frame (its player stayed out of the top 10) gives no
  sample (``unseen_updates``); a socket that missed every frame showing it gives none either
  (``not_reflected``; the board moved on).
- ``published_ms``: from the frame's ``published_at`` (the publisher's clock inside the server) to
  its arrival: the fan-out part alone. The bare server has only this one (``end`` instead of
  ``match``): its frames are made at ``published_at``.

Protocol with the orchestrator: connects every socket (with ``--wait-first-frame``, also waits for
its first text frame: the app's connect snapshot, so that no connect backlog is measured as
delivery latency), prints ``ready <n_ready> <seconds>``, waits for ``go`` on stdin, records for
``--duration`` seconds, keeps reading until the next line (``match PATH`` with the POST records, or
``end``), writes the JSON result and exits. Every socket's last snapshot is compared with the newest
any socket of this process saw (``last_seqs``: the orchestrator checks it across processes).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import socket
import struct
import sys
import time
from array import array
from collections import Counter
from pathlib import Path
from typing import Any

from bench.topology import raise_nofile

ENGINES = ("native", "python")
SEQ = b'"seq":'
PUBLISHED = b'"published_at":'
CONNECT_CONCURRENCY = 200
OPEN_TIMEOUT = 30.0
# Bytes asked of each recvmsg. Keep it under glibc's mmap threshold (128 KB): CPython allocates the whole
# buffer for every read before shrinking it, and at 256 KB each read cost an mmap, a page fault and an
# munmap; the client took 22.5-24.8 us of CPU per frame instead of 8.8-9.5 (2,000 sockets, bare server
# at 10 frames/s; at 10,000 sockets its four processes used 0.5-0.9 of the box's 2 cores).
# More than this queued is read by the next callback (the reader stays ready).
READ_SIZE = int(os.environ.get("BENCH_WS_READ_SIZE", str(1 << 16)))
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # Linux; SCM_TIMESTAMPNS has the same value
TIMESPEC = struct.Struct("qq")
ANCILLARY = socket.CMSG_SPACE(TIMESPEC.size)


def client_engine() -> str:
    """The engine the client processes use: ``BENCH_WS_CLIENT`` (native, the default, or python)."""
    engine = os.environ.get("BENCH_WS_CLIENT", "native")
    if engine not in ENGINES:
        raise SystemExit(f"BENCH_WS_CLIENT={engine}: one of {', '.join(ENGINES)}")
    return engine


def prepare() -> None:
    """Build the C engine once, before client processes start (each would otherwise compile it)."""
    from bench import native

    native.build()


class Stats:
    """What one process records: per socket, each frame's seq and kernel arrival (epoch ms)."""

    def __init__(self) -> None:
        self.recording = False
        self.closed = 0
        # seq -> the frame's JSON (the first copy seen): the same bytes reach every socket.
        self.bodies: dict[int, bytes] = {}
        self.lag = array("d")  # ms between the kernel's stamp and this process's read, per read
        self.user_clock = 0  # reads without a kernel stamp (then the read's own time is used)


def kernel_ms(ancillary: list[tuple[int, int, bytes]]) -> float | None:
    """The ``SCM_TIMESTAMPNS`` of one ``recvmsg``'s ancillary data, in epoch ms (None when absent)."""
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= TIMESPEC.size:
            sec, nsec = TIMESPEC.unpack_from(data)
            return sec * 1000.0 + nsec / 1e6
    return None


def kernel_stamps_on(timeout: float = 2.0) -> socket.socket | None:
    """Make sure the kernel stamps received packets before anything is measured; keep the returned
    socket open while measuring (None when no stamp came within ``timeout``).

    Linux stamps packets only while some socket asks for it, and switches that on from a work queue
    *after* the first ``SO_TIMESTAMPNS`` (and off again once the last such socket closes): on a
    loaded box the first packets after the option is set can arrive unstamped, and are then read at
    the read's own time (``user_clock``). This socket asks for stamps and sends itself datagrams until
    one comes back stamped; while it stays open the stamping stays on."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.05)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sock.sendto(b"stamp?", sock.getsockname())
        try:
            _data, ancillary, _flags, _address = sock.recvmsg(16, ANCILLARY)
        except TimeoutError:
            continue
        if kernel_ms(ancillary) is not None:
            return sock
        time.sleep(0.01)
    sock.close()
    return None


def number_after(buf: bytes, key: bytes, start: int, stop: int) -> bytes | None:
    found = buf.find(key, start, stop)
    if found < 0:
        return None
    begin = end = found + len(key)
    while end < stop and buf[end] not in b",}":
        end += 1
    return buf[begin:end]


class WsSocket:
    """One client socket: the handshake, then unmasked server frames parsed as they come."""

    __slots__ = ("arrivals", "buf", "first", "loop", "opened", "request", "seqs", "sock", "stats", "upgraded")

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sock: socket.socket,
        host: str,
        path: str,
        stats: Stats,
    ) -> None:
        self.loop = loop
        self.sock = sock
        self.stats = stats
        self.opened: asyncio.Future[bool] = loop.create_future()
        self.first: asyncio.Future[bool] = loop.create_future()
        self.buf = b""
        self.upgraded = False
        self.seqs = array("q")
        self.arrivals = array("d")
        key = base64.b64encode(os.urandom(16)).decode()
        self.request = (
            f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nOrigin: http://{host}\r\n\r\n"
        ).encode()

    def start(self) -> None:
        self.sock.send(self.request)  # a few hundred bytes into an empty send buffer
        self.loop.add_reader(self.sock.fileno(), self.readable)

    def close(self) -> None:
        with contextlib.suppress(ValueError, OSError):
            self.loop.remove_reader(self.sock.fileno())
        self.sock.close()

    def lost(self) -> None:
        self.stats.closed += 1
        self.close()
        for pending in (self.opened, self.first):
            if not pending.done():
                pending.set_result(False)

    def readable(self) -> None:
        try:
            data, ancillary, _flags, _address = self.sock.recvmsg(READ_SIZE, ANCILLARY)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.lost()
            return
        if not data:
            self.lost()
            return
        now = time.time() * 1000.0
        stamp = kernel_ms(ancillary)
        if stamp is None:
            self.stats.user_clock += 1
            stamp = now
        elif self.stats.recording:
            self.stats.lag.append(now - stamp)
        self.received(data, stamp)

    def received(self, data: bytes, arrival_ms: float) -> None:
        """Frames in ``data`` (after whatever was buffered), all stamped ``arrival_ms``."""
        buf = self.buf + data if self.buf else data
        if not self.upgraded:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                self.buf = buf
                return
            ok = buf.startswith(b"HTTP/1.1 101")
            if not self.opened.done():
                self.opened.set_result(ok)
            if not ok:
                self.lost()
                return
            self.upgraded = True
            buf = buf[end + 4 :]
        pos = 0
        size = len(buf)
        while size - pos >= 2:
            b0, length = buf[pos], buf[pos + 1] & 0x7F
            head = 2
            if length == 126:
                if size - pos < 4:
                    break
                length = int.from_bytes(buf[pos + 2 : pos + 4], "big")
                head = 4
            elif length == 127:
                if size - pos < 10:
                    break
                length = int.from_bytes(buf[pos + 2 : pos + 10], "big")
                head = 10
            if size - pos < head + length:
                break
            opcode = b0 & 0x0F
            start, stop = pos + head, pos + head + length
            if opcode == 0x1:
                if not self.first.done():
                    self.first.set_result(True)
                seq = number_after(buf, SEQ, start, min(stop, start + 64))
                if seq is not None:
                    number = int(seq)
                    self.seqs.append(number)
                    self.arrivals.append(arrival_ms)
                    if number not in self.stats.bodies:
                        self.stats.bodies[number] = buf[start:stop]
            elif opcode == 0x9:  # ping -> masked pong (zero mask key)
                payload = buf[start:stop]
                with contextlib.suppress(OSError):
                    self.sock.send(bytes([0x8A, 0x80 | len(payload)]) + b"\0\0\0\0" + payload)
            pos = stop
        self.buf = buf[pos:] if pos < size else b""


def published_at(body: bytes) -> float | None:
    value = number_after(body, PUBLISHED, 0, len(body))
    return float(value) if value else None


def shown(body: bytes) -> set[tuple[str, int]]:
    """The (user id, score) pairs a board frame's top 10 shows."""
    rows = json.loads(body).get("leaderboard") or []
    return {(str(row["user_id"]), int(row["score"])) for row in rows}


def match(
    sockets: list[tuple[array[int], array[float]]],
    bodies: dict[int, bytes],
    posts: list[tuple[float, str, int]],
    since_ms: float,
    until_ms: float,
) -> dict[str, Any]:
    """POST sent -> first arrival, at each socket, of a frame showing that update.

    ``sockets``: per socket its (seqs, arrival ms) in arrival order. ``posts``: (sent epoch ms,
    user id, new score) of each answered update; those sent within ``[since_ms, until_ms)`` count.
    """
    showing: dict[tuple[str, int], list[int]] = {}
    for seq in sorted(bodies):
        for pair in shown(bodies[seq]):
            showing.setdefault(pair, []).append(seq)
    wanted = [(sent, showing.get((user, score), [])) for sent, user, score in posts if since_ms <= sent < until_ms]
    counted = [(sent, seqs) for sent, seqs in wanted if seqs]
    latencies = array("d")
    not_reflected = 0
    for seqs_got, arrivals in sockets:
        got: dict[int, float] = {}
        for seq, at in zip(seqs_got, arrivals, strict=True):
            got.setdefault(seq, at)
        for sent, seqs in counted:
            for seq in seqs:
                first = got.get(seq)
                if first is not None:
                    latencies.append(first - sent)
                    break
            else:
                not_reflected += 1
    # Per shown POST: sent -> the published_at of the first frame showing it (the server's part before
    # the fan-out: HTTP, the database, the publish script's stamp).
    to_publish = [p - sent for sent, seqs in counted if (p := published_at(bodies[seqs[0]])) is not None]
    return {
        "latencies_ms": list(latencies),
        "post_to_publish_ms": to_publish,
        "updates_in_window": len(wanted),
        "unseen_updates": len(wanted) - len(counted),
        "not_reflected": not_reflected,
    }


async def open_socket(
    loop: asyncio.AbstractEventLoop, target: str, host: str, path: str, stats: Stats
) -> WsSocket | None:
    if target.startswith("unix:"):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        address: Any = target[5:]
    else:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        name, _, port = target.rpartition(":")
        address = (name, int(port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setblocking(False)
    with contextlib.suppress(OSError):  # without kernel stamps the reads are counted in user_clock
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    try:
        await loop.sock_connect(sock, address)
    except OSError:
        sock.close()
        return None
    client = WsSocket(loop, sock, host, path, stats)
    client.start()
    return client


async def run(args: argparse.Namespace) -> dict[str, object]:
    raise_nofile()
    loop = asyncio.get_running_loop()
    stats = Stats()
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
    clients: list[WsSocket] = []

    async def open_one(index: int) -> bool:
        async with gate:
            # --connect: straight to the ASGI servers (round-robin), with the Host nginx would pass on.
            target = args.connect[index % len(args.connect)] if args.connect else f"{args.host}:{args.port}"
            host = args.host if args.connect else target
            client = await open_socket(loop, target, host, args.path, stats)
            if client is None:
                return False
            clients.append(client)
            try:
                if not await asyncio.wait_for(asyncio.shield(client.opened), OPEN_TIMEOUT):
                    return False
            except TimeoutError:
                return False
        if not args.wait_first_frame:
            return True
        try:  # outside the connect gate: the snapshot read may queue behind other sockets' reads
            return await asyncio.wait_for(asyncio.shield(client.first), OPEN_TIMEOUT)
        except TimeoutError:
            return False

    started = time.perf_counter()
    results = await asyncio.gather(*(open_one(i) for i in range(args.count)))
    connected = sum(results)
    print(f"ready {connected} {time.perf_counter() - started:.2f}", flush=True)
    await loop.run_in_executor(None, sys.stdin.readline)
    go_ms = time.time() * 1000.0
    for client in clients:  # frames before "go" (connect snapshots) are not deliveries
        del client.seqs[:]
        del client.arrivals[:]
    stats.recording = True
    await asyncio.sleep(args.duration)
    stats.recording = False
    until_ms = go_ms + args.duration * 1000.0
    # Still reading (late frames of updates sent in the window, the final board) until told to stop.
    command = (await loop.run_in_executor(None, sys.stdin.readline)).split()
    alive = connected - stats.closed
    for client in clients:
        client.close()
    in_window = [
        (client.seqs, client.arrivals)
        for client in clients
        if client.upgraded  # (closed sockets keep what they had recorded)
    ]
    return finish(in_window, stats.bodies, stats.lag, stats.user_clock, connected, alive, command, go_ms, until_ms)


def run_native(args: argparse.Namespace) -> dict[str, object]:
    """The same as ``run``, the sockets read by the C engine (bench/wsclient_native.c)."""
    from bench.native import Clients

    raise_nofile()
    clients = Clients()
    targets = args.connect or [f"{args.host}:{args.port}"]
    host = args.host if args.connect else targets[0]
    started = time.perf_counter()
    connected = clients.open(
        targets,
        host,
        args.path,
        args.count,
        args.wait_first_frame,
        OPEN_TIMEOUT,
        CONNECT_CONCURRENCY,
        READ_SIZE,
        args.batch_us,
    )
    print(f"ready {connected} {time.perf_counter() - started:.2f}", flush=True)
    clients.read_until_line()  # "go"
    go_ms = time.time() * 1000.0
    clients.clear()  # frames before "go" (connect snapshots) are not deliveries
    clients.recording(True)
    clients.read_for(args.duration)
    clients.recording(False)
    until_ms = go_ms + args.duration * 1000.0
    # Still reading (late frames of updates sent in the window, the final board) until told to stop.
    command = clients.read_until_line().split()
    alive = connected - clients.closed
    clients.close_all()
    result = finish(
        clients.sockets(),
        clients.bodies(),
        clients.lag(),
        clients.user_clock,
        connected,
        alive,
        command,
        go_ms,
        until_ms,
    )
    result["polls"], result["polled_ready"] = clients.polls
    return result


def finish(
    in_window: list[tuple[array[int], array[float]]],
    bodies: dict[int, bytes],
    lag: array[float],
    user_clock: int,
    connected: int,
    alive: int,
    command: list[str],
    go_ms: float,
    until_ms: float,
) -> dict[str, object]:
    """One process's result from what its sockets recorded (per socket its seqs and arrival ms)."""
    recorded = [
        (
            array("q", (s for s, a in zip(seqs, arr, strict=True) if a < until_ms)),
            array("d", (a for a in arr if a < until_ms)),
        )
        for seqs, arr in in_window
    ]
    published: list[float] = []
    frames = 0
    for seqs, arrivals in recorded:
        frames += len(seqs)
        for seq, at in zip(seqs, arrivals, strict=True):
            sent = published_at(bodies[seq])
            if sent is not None:
                published.append(at - sent)
    per_seq: dict[int, list[float]] = {}
    for seqs, arrivals in recorded:
        for seq, at in zip(seqs, arrivals, strict=True):
            per_seq.setdefault(seq, []).append(at)
    per_frame = []  # seq, published_at, then first / median / last arrival (epoch ms), sockets
    for seq in sorted(per_seq):
        times = sorted(per_seq[seq])
        per_frame.append([seq, published_at(bodies[seq]), times[0], times[len(times) // 2], times[-1], len(times)])
    result: dict[str, object] = {
        "per_frame": per_frame,
        "connected": connected,
        "alive_at_end": alive,
        "frames": frames,
        "published_ms": published,
        "client_lag_ms": list(lag),
        "user_clock_reads": user_clock,
        # Each socket's last snapshot (its seq), counted: all should be at the newest.
        "last_seqs": dict(Counter(str(seqs[-1]) for seqs, _ in in_window if seqs)),
        "sockets_without_frames": sum(1 for seqs, _ in in_window if not seqs),
    }
    if command[:1] == ["match"]:
        posts = [(float(sent), str(user), int(score)) for sent, user, score in json.loads(Path(command[1]).read_text())]
        # Arrivals after the window count too (a POST sent at its end is delivered just after it).
        result.update(match(in_window, bodies, posts, go_ms, until_ms))
    else:
        result["latencies_ms"] = published
    return result


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
    parser.add_argument(
        "--engine",
        choices=ENGINES,
        default=client_engine(),
        help="native: the sockets are read in C (bench/wsclient_native.c), python: by this module's asyncio loop",
    )
    parser.add_argument(
        "--batch-us",
        type=int,
        default=int(os.environ.get("BENCH_WS_BATCH_US", "1000")),
        help="native engine: microseconds between polls that found few sockets ready (0: none)",
    )
    parser.add_argument(
        "--nice",
        type=int,
        default=0,
        help="lower this process's CPU priority: the servers measured get the shared cores first",
    )
    args = parser.parse_args()
    if args.nice:
        os.nice(args.nice)
    import uvloop

    stamps = kernel_stamps_on()  # open until the process ends: the kernel keeps stamping
    result = run_native(args) if args.engine == "native" else uvloop.run(run(args))
    if stamps is not None:
        stamps.close()
    Path(args.out).write_text(json.dumps(result))


if __name__ == "__main__":
    main()
