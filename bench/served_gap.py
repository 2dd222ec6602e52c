"""The same score updates in-process and served by gunicorn: what the HTTP server adds per update.

    DATABASE_URL=... REDIS_URL=... python -m bench.served_gap [--updates 2000] [--rounds 3] [--boards 3]

``bench.profile_update`` measures an update through Django's WSGI handler inside its own process;
``make bench`` measures gunicorn's workers behind nginx under load, at two to three times that CPU
per request. This tool puts the two side by side on the same box, players and requests, alternating:

- ``in-process``: the request's WSGI environ handed to Django's handler in this process (CPU time of
  this process, as ``bench.profile_update``);
- ``gunicorn``: the same requests, as raw HTTP/1.1 bytes, one connection each (a sync worker closes
  every connection, as it does behind nginx), sent one after another to one gunicorn sync worker
  started with ``deploy/gunicorn.conf.py`` on loopback (CPU time of that worker, from /proc).

One request in flight at a time in both, so neither queues nor contends with itself: the difference
is the HTTP server's own work per request (accept, parse, the environ, write, close) plus whatever
running in a separate process costs. The same environment as ``bench.profile_update`` (its secrets,
raised limits, one persistent database connection); each of 2,000 players submits once per run and
their fraud windows are emptied first. Single-process metrics in both (no PROMETHEUS_MULTIPROC_DIR).
A measuring tool, not a test.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

from bench import profile_update  # sets the environment defaults (secrets, limits) on import
from bench.topology import children, cpu_seconds
from bench.wsgi_request import update_environ, wsgi_status

ROOT = Path(__file__).resolve().parents[1]
PORT = int(os.environ.get("BENCH_SERVED_GAP_PORT", "8590"))


def raw_request(environ: dict[str, Any]) -> bytes:
    body = environ["wsgi.input"].getvalue()
    head = (
        f"POST {environ['PATH_INFO']} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nAuthorization: {environ['HTTP_AUTHORIZATION']}\r\n\r\n"
    )
    return head.encode() + body


def send(request: bytes, port: int = PORT) -> int:
    with socket.create_connection(("127.0.0.1", port)) as conn:
        conn.sendall(request)
        chunks = []
        while True:
            chunk = conn.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    return int(b"".join(chunks).split(b" ", 2)[1])


class KeepAlive:
    """One HTTP/1.1 connection reused for every request (what nginx's upstream keepalive gives)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.conn: socket.socket | None = None
        self.buffer = b""

    def send(self, request: bytes) -> int:
        if self.conn is None:
            self.conn = socket.create_connection(("127.0.0.1", self.port))
            self.conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.conn.sendall(request.replace(b"Connection: close", b"Connection: keep-alive", 1))
        while b"\r\n\r\n" not in self.buffer:
            self.buffer += self._recv()
        head, _, rest = self.buffer.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        while len(rest) < length:
            rest += self._recv()
        self.buffer = rest[length:]
        return int(head.split(b" ", 2)[1])

    def _recv(self) -> bytes:
        assert self.conn is not None
        chunk = self.conn.recv(65536)
        if not chunk:
            raise ConnectionError("closed")
        return chunk


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--updates", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--boards", type=int, default=3, choices=(1, 2, 3))
    parser.add_argument(
        "--granian",
        action="store_true",
        help="granian's WSGI server beside gunicorn's (pip install granian first: not in the requirements)",
    )
    args = parser.parse_args()
    if not os.environ.get("DATABASE_URL", "").startswith("postgres") or not os.environ.get("REDIS_URL"):
        print("needs DATABASE_URL (PostgreSQL) and REDIS_URL", file=sys.stderr)
        return 2
    os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
    import django

    django.setup()
    from django.core.management import call_command
    from django.core.wsgi import get_wsgi_application

    from accounts.models import User
    from accounts.services import player_tokens_issue
    from fraud import windows
    from scoreboard.redis import get_redis
    from scores import action_tokens

    call_command("migrate", verbosity=0)
    profile_update.boards_feed(args.boards)
    players = []
    for i in range(profile_update.PLAYERS):
        user, _ = User.objects.get_or_create(username=f"prof{i:04d}", defaults={"email": f"prof{i}@example.invalid"})
        players.append((user, player_tokens_issue(user=user).access))
    client = get_redis()
    assert client is not None
    app = get_wsgi_application()

    def environ_for(user: Any, jwt: str) -> dict[str, Any]:
        token = action_tokens.mint(user_id=str(user.pk), action_type="LEVEL_COMPLETION", score_increment=100)
        return update_environ(token.action_token, jwt)

    def in_process(environ: dict[str, Any]) -> int:
        return wsgi_status(app, environ)

    servers: dict[str, subprocess.Popen[bytes]] = {
        "gunicorn": subprocess.Popen(  # noqa: S603
            [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "deploy" / "gunicorn.conf.py"),
             "--bind", f"127.0.0.1:{PORT}", "--workers", "1", "scoreboard.wsgi:application"],
            cwd=ROOT, env={**os.environ, "WEB_CONCURRENCY": "1", "GUNICORN_THREADS": "1"},
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        ),
    }  # fmt: skip
    ports = {"gunicorn": PORT}
    if args.granian:
        # One worker, one blocking (Python) thread: one request at a time, as a sync worker.
        servers["granian"] = subprocess.Popen(  # noqa: S603
            [sys.executable, "-m", "granian", "--interface", "wsgi", "--host", "127.0.0.1",
             "--port", str(PORT + 1), "--workers", "1", "--blocking-threads", "1",
             "--runtime-threads", "1", "--no-ws", "--log-level", "warning", "scoreboard.wsgi:application"],
            cwd=ROOT, env={**os.environ, "DB_POOL": "0"},
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        ports["granian"] = PORT + 1
    try:
        workers: dict[str, list[int]] = {}
        for name, server in servers.items():
            deadline = time.monotonic() + 60
            while True:
                try:
                    socket.create_connection(("127.0.0.1", ports[name]), timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline or server.poll() is not None:
                        print(f"{name} did not start", file=sys.stderr)
                        return 1
                    time.sleep(0.2)
            time.sleep(1.0)
            workers[name] = children(server.pid)
            assert len(workers[name]) == 1, (name, workers[name])
        keepalive = {name: KeepAlive(port) for name, port in ports.items() if name != "gunicorn"}
        # Warm up every contender: connections, scripts, every player's card.
        for user, jwt in players:
            for port in ports.values():
                assert send(raw_request(environ_for(user, jwt)), port) == 200
        for user, jwt in players[:200]:
            assert in_process(environ_for(user, jwt)) == 200
            for ka in keepalive.values():
                assert ka.send(raw_request(environ_for(user, jwt))) == 200
        modes = ["in-process", *ports, *(f"{name}-keepalive" for name in keepalive)]
        results: dict[str, list[float]] = {mode: [] for mode in modes}
        for rnd in range(args.rounds):
            for mode in modes if rnd % 2 == 0 else modes[::-1]:
                client.delete(*[windows._player_key(str(u.pk)) for u, _ in players], windows._ip_key("127.0.0.1"))
                batch = [environ_for(*players[i % len(players)]) for i in range(args.updates)]
                if mode == "in-process":
                    before = time.process_time()
                    statuses = [in_process(e) for e in batch]
                    spent = time.process_time() - before
                else:
                    name = mode.removesuffix("-keepalive")
                    requests = [raw_request(e) for e in batch]
                    sender = keepalive[name].send if mode.endswith("-keepalive") else partial(send, port=ports[name])
                    before = cpu_seconds(workers[name])
                    statuses = [sender(r) for r in requests]
                    spent = cpu_seconds(workers[name]) - before
                assert set(statuses) == {200}, (mode, set(statuses))
                results[mode].append(spent / args.updates * 1000)
    finally:
        for server in servers.values():
            server.terminate()
        for server in servers.values():
            server.wait(timeout=20)
    print(f"{args.updates} updates x {args.rounds} alternating rounds, {args.boards} boards, CPU ms per update:")
    for mode, values in results.items():
        runs = [round(v, 3) for v in values]
        print(f"  {mode:10s} best {min(values):.3f}  median {statistics.median(values):.3f}  {runs}")
    for mode in results:
        if mode == "in-process":
            continue
        gap = [g - p for g, p in zip(results[mode], results["in-process"], strict=True)]
        rounded = [round(g, 3) for g in gap]
        print(f"  {mode} - in-process, per round: median {statistics.median(gap):.3f} ms ({rounded})")
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
