"""Real ASGI server processes (uvicorn) for the cross-process, SSE and browser tests.

They run against this test session's PostgreSQL database and Redis db, so tests using them need
``django_db(transaction=True)``: the servers only see committed rows.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import httpx
from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parents[2]
# REALTIME_TEST_PORTS=8750 moves the range, so parallel runs on one machine keep out of each other's way.
_PORT_BASE = int(os.environ.get("REALTIME_TEST_PORTS", "8150"))
PORT_RANGE = range(_PORT_BASE, _PORT_BASE + 50)
START_TIMEOUT_SECONDS = 30


@dataclass(frozen=True)
class Server:
    port: int
    process: subprocess.Popen[bytes]

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}"


def free_port(taken: set[int]) -> int:
    for port in PORT_RANGE:
        if port in taken:
            continue
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {PORT_RANGE.start}-{PORT_RANGE.stop - 1}")


def gunicorn_started(
    app: str, port: int, log: Path, env: dict[str, str], timeout: float = 60
) -> subprocess.Popen[bytes]:
    """gunicorn with ``deploy/gunicorn.conf.py`` serving ``app`` on 127.0.0.1:``port``, once it answers
    ``GET /healthz``; its output goes to ``log`` (quoted when it exits or never answers)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "deploy" / "gunicorn.conf.py"), "--bind",
         f"127.0.0.1:{port}", app],
        cwd=ROOT, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    deadline = time.monotonic() + timeout
    while True:
        assert process.poll() is None, log.read_text()[-3000:]
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200:
                return process
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"gunicorn on {port} did not answer:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)


def session_database_url() -> str:
    db = connection.settings_dict
    auth = quote(db["USER"] or "")
    if db.get("PASSWORD"):
        auth += ":" + quote(db["PASSWORD"])
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def _wait_ready(server: Server, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"server on {server.port} exited:\n{log.read_text()[-3000:]}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{server.http}/v1/leaderboard", timeout=2).status_code == 200:
                return
        time.sleep(0.2)
    raise RuntimeError(f"server on {server.port} did not answer:\n{log.read_text()[-3000:]}")


@contextlib.contextmanager
def asgi_servers(count: int, log_dir: Path, extra_env: dict[str, str] | None = None) -> Iterator[list[Server]]:
    env = {
        **os.environ,
        "DATABASE_URL": session_database_url(),
        "REDIS_URL": settings.REDIS_URL,
        "DB_CONN_MAX_AGE": "0",
        "FRAUD_BLOCK_THRESHOLD": "2",
        "RATE_LIMIT_ENABLED": "false",
        "LOG_LEVEL": "WARNING",
        # Tests create boards and then use them on the servers at once (production: within 5 s).
        "BOARDS_CACHE_SECONDS": "0",
        # The suite empties Redis before every test; a server must not take that for a Redis that
        # came back empty and rebuild the index in the background from the previous test's rows.
        "REDIS_RECONNECT_HOOKS": "false",
        **(extra_env or {}),
    }
    servers: list[Server] = []
    try:
        for i in range(count):
            port = free_port({s.port for s in servers})
            log = log_dir / f"server-{i}.log"
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "uvicorn",
                    "scoreboard.asgi:application",
                    "--host=127.0.0.1",
                    f"--port={port}",
                    "--lifespan=off",
                    "--no-access-log",
                    "--ws=realtime.protocol:LeanWebSocketProtocol",  # as deploy/serve.py
                    "--ws-per-message-deflate=false",
                    "--ws-ping-interval=20",
                    "--ws-ping-timeout=20",
                ],
                cwd=ROOT,
                env=env,
                stdout=log.open("wb"),
                stderr=subprocess.STDOUT,
            )
            servers.append(Server(port, process))
            _wait_ready(servers[-1], log)
        yield servers
    finally:
        for server in servers:
            server.process.terminate()
        for server in servers:
            try:
                server.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.process.kill()
