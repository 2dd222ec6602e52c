"""``make serve`` for real: nginx -> gunicorn + two uvicorn processes + Celery, on this test database.

One topology is started for the module (it takes a few seconds), with its own Redis server so the
readiness test can stop and restart Redis without touching anyone else's.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from django.db import connection

from scores import action_tokens
from tests.factories import PLAYER_PASSWORD, PlayerFactory

ROOT = Path(__file__).resolve().parents[2]
SERVE = ROOT / "deploy" / "serve.py"
# Our slice of the shared machine's ports: nginx, gunicorn, two ASGI servers, metrics, Redis.
PORT = 8470
ASGI_PORTS = (8472, 8473)
METRICS_PORT = 8474
REALTIME_PORT = 8476  # the kernel-balanced WebSocket path (two processes here, four by default)
REALTIME_CAP = 3
REALTIME_CLIENT = "127.0.0.3"  # its own handshake budget (5/min here) and cap
REDIS_PORT = 8479
START_TIMEOUT_SECONDS = 90
WAIT_SECONDS = 15

# transaction=True: the topology's processes only see committed rows (and it makes pytest-django
# set up the test database, which the topology then uses).
pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@dataclass
class Topology:
    process: subprocess.Popen[bytes]
    state_dir: Path
    log_path: Path
    action_secret: str
    redis: subprocess.Popen[bytes] | None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{PORT}"

    def state(self) -> dict[str, Any]:
        return json.loads((self.state_dir / "serve.json").read_text())

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")


def _start_redis() -> subprocess.Popen[bytes]:
    redis_server = shutil.which("redis-server") or "/usr/bin/redis-server"
    proc = subprocess.Popen(
        [redis_server, "--port", str(REDIS_PORT), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            import socket

            with socket.create_connection(("127.0.0.1", REDIS_PORT), timeout=0.5):
                return proc
        time.sleep(0.1)
    proc.kill()
    pytest.fail("private redis-server did not start")


def _stop(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _database_url() -> str:
    s = connection.settings_dict
    auth = s["USER"] + (f":{s['PASSWORD']}" if s.get("PASSWORD") else "")
    return f"postgres://{auth}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture(scope="module")
def topology(
    django_db_setup: None, django_db_blocker: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Topology]:
    if not (shutil.which("nginx") or Path("/usr/sbin/nginx").exists()):
        pytest.fail("nginx is not installed: run `make nginx` (make serve and .ci/run do)")
    state_dir = tmp_path_factory.mktemp("serve")
    log_path = state_dir / "serve.log"
    redis = _start_redis()
    with django_db_blocker.unblock():
        database_url = _database_url()
    action_secret = secrets.token_urlsafe(48)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PYTEST_", "DJANGO_")) and k != "PROMETHEUS_MULTIPROC_DIR"
    }
    env.update(
        DATABASE_URL=database_url,
        REDIS_URL=f"redis://127.0.0.1:{REDIS_PORT}/0",
        PORT=str(PORT),
        ASGI_BASE_PORT=str(ASGI_PORTS[0]),
        ASGI_PROCESSES=str(len(ASGI_PORTS)),
        METRICS_PORT=str(METRICS_PORT),
        REALTIME_PORT=str(REALTIME_PORT),
        REALTIME_PROCESSES="2",
        REALTIME_WS_PER_ADDRESS=str(REALTIME_CAP),
        STATE_DIR=str(state_dir),
        SERVE_PYTHON=sys.executable,
        SERVE_SKIP_MIGRATE="1",  # the test database is already migrated
        DJANGO_DEBUG="0",
        DJANGO_SECRET_KEY=secrets.token_urlsafe(48),
        JWT_SECRET=secrets.token_urlsafe(48),
        ACTION_TOKEN_SECRET=action_secret,
        RATE_LIMIT_WS_HANDSHAKES_PER_MINUTE=str(WS_HANDSHAKES_PER_MINUTE),
        PATH="/usr/sbin:" + os.environ.get("PATH", ""),
    )
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, str(SERVE), "start"], cwd=ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT
        )
    top = Topology(process=process, state_dir=state_dir, log_path=log_path, action_secret=action_secret, redis=redis)
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    try:
        while True:
            if process.poll() is not None:
                pytest.fail(f"serve exited with {process.returncode}:\n{top.log_text()[-4000:]}")
            with contextlib.suppress(OSError, ValueError):
                if top.state().get("ready"):
                    break
            if time.monotonic() > deadline:
                pytest.fail(f"serve not ready after {START_TIMEOUT_SECONDS}s:\n{top.log_text()[-4000:]}")
            time.sleep(0.3)
        yield top
    finally:
        children = {}
        with contextlib.suppress(OSError, ValueError):
            children = top.state().get("pids", {})
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=40)
        except subprocess.TimeoutExpired:
            process.kill()
        _stop(top.redis)
        leftover = [f"{name}:{pid}" for name, pid in children.items() if _pid_alive(pid)]
        assert not leftover, f"processes still running after SIGTERM: {leftover}"


@pytest.fixture
def player_login(topology: Topology) -> tuple[str, str]:
    """A committed player and an access token issued by the topology itself (its JWT_SECRET)."""
    player = PlayerFactory.create(username=f"ops{secrets.token_hex(3)}")
    response = httpx.post(
        f"{topology.url}/v1/auth/login", json={"username": player.username, "password": PLAYER_PASSWORD}
    )
    assert response.status_code == 200, response.text
    return str(player.pk), response.json()["data"]["access"]


def _metric(text: str, name: str, *, absent_is_zero: bool = False) -> float:
    """Sum of a metric's samples (all label sets). A labelled counter appears on first use only."""
    total = 0.0
    found = False
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            total += float(line.rsplit(" ", 1)[1])
            found = True
    assert found or absent_is_zero, f"{name} not exposed"
    return total


async def _submit(client: httpx.AsyncClient, topology: Topology, user_id: str, access: str, increment: int) -> Any:
    """A score update through the topology's front door, with an action token it accepts."""
    token = action_tokens.mint(
        user_id=user_id, action_type="LEVEL_COMPLETION", score_increment=increment, secret=topology.action_secret
    ).action_token
    return await client.post(
        f"{topology.url}/v1/scores/update", json={"action_token": token}, headers={"Authorization": f"Bearer {access}"}
    )


async def _next_board_with(ws: Any, user_id: str, score: int) -> dict[str, Any]:
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        frame = json.loads(await asyncio.wait_for(ws.recv(), timeout=max(0.1, deadline - time.monotonic())))
        if frame.get("type") == "leaderboard_update":
            rows = {row["user_id"]: row["score"] for row in frame["leaderboard"]}
            if rows.get(user_id) == score:
                return frame


def _access_log_upstreams(topology: Topology, path: str, expected: int) -> list[str]:
    access_log = topology.state_dir / "nginx" / "access.log"
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        lines = [json.loads(line) for line in access_log.read_text().splitlines() if line.strip()]
        upstreams = [entry["upstream"] for entry in lines if entry["path"] == path]
        if len(upstreams) >= expected or time.monotonic() > deadline:
            return upstreams
        time.sleep(0.2)


def test_a_score_through_nginx_reaches_websockets_on_both_asgi_processes(
    topology: Topology, player_login: tuple[str, str]
) -> None:
    user_id, access = player_login
    origin = topology.url
    ws_url = f"ws://127.0.0.1:{PORT}/v1/realtime"

    async def scenario() -> tuple[list[dict[str, Any]], str]:
        # nginx round-robins (shared zone) so two sockets opened in a row land on the two ASGI servers.
        async with (
            websockets.connect(ws_url, origin=origin) as first,  # type: ignore[arg-type]
            websockets.connect(ws_url, origin=origin) as second,  # type: ignore[arg-type]
        ):
            for ws in (first, second):
                snapshot = json.loads(await asyncio.wait_for(ws.recv(), timeout=WAIT_SECONDS))
                assert snapshot["type"] == "leaderboard_update"
            async with httpx.AsyncClient() as client:
                open_metrics = (await client.get(f"http://127.0.0.1:{METRICS_PORT}/metrics")).text
                response = await _submit(client, topology, user_id, access, 250)
            assert response.status_code == 200, response.text
            assert response.json()["data"]["new_score"] == 250
            frames = [await _next_board_with(ws, user_id, 250) for ws in (first, second)]
        return frames, open_metrics

    frames, open_metrics = asyncio.run(scenario())
    assert all(f["leaderboard"][0]["user_id"] == user_id for f in frames)
    assert _metric(open_metrics, "scoreboard_websocket_connections") == 2

    upstreams = _access_log_upstreams(topology, "/v1/realtime", expected=2)
    assert sorted(upstreams) == sorted(f"127.0.0.1:{p}" for p in ASGI_PORTS), upstreams


def test_the_page_sends_browsers_to_the_kernel_balanced_port_which_caps_real_addresses(
    topology: Topology, player_login: tuple[str, str]
) -> None:
    """The default path: the page names the SO_REUSEPORT port; there the origin check holds, a forged
    X-Forwarded-For buys nothing (no proxy is trusted), and the per-address cap counts across both
    processes of the group."""
    user_id, access = player_login
    page = httpx.get(f"{topology.url}/", timeout=WAIT_SECONDS).text
    live_url = f"ws://127.0.0.1:{REALTIME_PORT}"
    assert f'data-live="{live_url}"' in page
    origin = topology.url

    async def scenario() -> tuple[list[dict[str, Any]], int, int]:
        async with contextlib.AsyncExitStack() as held:
            sockets = []
            for i in range(REALTIME_CAP):
                # Each claims another address; the processes count the peer's (127.0.0.1).
                headers = {"X-Forwarded-For": f"203.0.113.{i + 1}"}
                ws = await held.enter_async_context(
                    websockets.connect(
                        f"{live_url}/v1/realtime",
                        origin=origin,  # type: ignore[arg-type]
                        additional_headers=headers,
                        local_addr=(REALTIME_CLIENT, 0),
                    )
                )
                snapshot = json.loads(await asyncio.wait_for(ws.recv(), timeout=WAIT_SECONDS))
                assert snapshot["type"] == "leaderboard_update"
                sockets.append(ws)
            with pytest.raises(websockets.exceptions.InvalidStatus) as over_cap:
                async with websockets.connect(
                    f"{live_url}/v1/realtime",
                    origin=origin,  # type: ignore[arg-type]
                    local_addr=(REALTIME_CLIENT, 0),
                ):
                    pass
            async with httpx.AsyncClient() as client:
                response = await _submit(client, topology, user_id, access, 5)
            assert response.status_code == 200, response.text
            score = response.json()["data"]["new_score"]
            frames = [await _next_board_with(ws, user_id, score) for ws in sockets]
        with pytest.raises(websockets.exceptions.InvalidStatus) as foreign:
            async with websockets.connect(
                f"{live_url}/v1/realtime",
                origin="http://evil.example",  # type: ignore[arg-type]
                local_addr=(REALTIME_CLIENT, 0),
            ):
                pass
        return frames, over_cap.value.response.status_code, foreign.value.response.status_code

    frames, over_cap, foreign = asyncio.run(scenario())
    assert len(frames) == REALTIME_CAP  # each socket got the update
    assert over_cap == 429  # one socket too many for 127.0.0.3, whatever the headers said
    assert foreign == 403  # another site's page may not open a socket here


def _first_event_data(lines: Iterator[str]) -> str:
    """Reads up to the first event's data. The caller keeps ``lines`` referenced: a closed line
    iterator closes the HTTP connection (and so the stream) underneath."""
    for line in lines:
        if line.startswith("data:"):
            return line
    raise AssertionError("the stream ended without an event")


def test_metrics_move_and_are_summed_across_processes(topology: Topology, player_login: tuple[str, str]) -> None:
    user_id, access = player_login
    before = httpx.get(f"http://127.0.0.1:{METRICS_PORT}/metrics").text
    with httpx.Client(base_url=topology.url) as client:
        for increment in (10, 20):
            token = action_tokens.mint(
                user_id=user_id,
                action_type="LEVEL_COMPLETION",
                score_increment=increment,
                secret=topology.action_secret,
            ).action_token
            assert client.post(
                "/v1/scores/update", json={"action_token": token}, headers={"Authorization": f"Bearer {access}"}
            ).is_success
        refused = client.post("/v1/scores/update", json={"action_token": "x"}, headers={"Authorization": "Bearer no"})
        assert refused.status_code == 401
        assert refused.headers["content-type"].startswith("application/json")
    after = httpx.get(f"http://127.0.0.1:{METRICS_PORT}/metrics").text
    assert _metric(after, "scoreboard_score_updates_total") - _metric(before, "scoreboard_score_updates_total") == 2
    assert (
        _metric(after, "scoreboard_failed_auth_total")
        - _metric(before, "scoreboard_failed_auth_total", absent_is_zero=True)
        >= 1
    )
    latency = 'scoreboard_http_request_duration_seconds_count{method="POST",route="/v1/scores/update"}'
    assert _metric(after, latency) >= 3
    assert _metric(after, "scoreboard_redis_used_memory_bytes") > 0
    assert _metric(after, "scoreboard_db_connections") >= 1
    # An open SSE stream (served by an ASGI process) is counted while it is open.
    with httpx.stream("GET", f"{topology.url}/v1/leaderboard/stream", timeout=WAIT_SECONDS) as stream:
        assert stream.status_code == 200
        assert stream.headers["content-type"].startswith("text/event-stream")
        lines = stream.iter_lines()
        assert '"leaderboard_update"' in _first_event_data(lines)
        assert _metric(httpx.get(f"http://127.0.0.1:{METRICS_PORT}/metrics").text, "scoreboard_sse_connections") == 1
    # Never on the public port, even from this host.
    public = httpx.get(f"{topology.url}/metrics")
    assert public.status_code == 404 and public.json()["error"]["code"] == "not_found"


def test_request_id_from_nginx_is_echoed_and_logged(topology: Topology) -> None:
    response = httpx.get(f"{topology.url}/v1/leaderboard")
    assert response.status_code == 200
    request_id = response.headers["x-request-id"]
    access_log = topology.state_dir / "nginx" / "access.log"
    # nginx writes the access line after the response has gone out: wait for it, do not race it.
    deadline = time.monotonic() + WAIT_SECONDS
    while f'"request_id":"{request_id}"' not in access_log.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert f'"request_id":"{request_id}"' in access_log.read_text()
    refused = httpx.post(f"{topology.url}/v1/scores/update", json={}, headers={"Authorization": "Bearer eyJ.abc.def"})
    assert refused.status_code == 401
    rid = refused.headers["x-request-id"]
    deadline = time.monotonic() + WAIT_SECONDS
    while rid not in topology.log_text() and time.monotonic() < deadline:
        time.sleep(0.2)
    lines = [json.loads(line) for line in topology.log_text().splitlines() if line.startswith("{") and rid in line]
    assert any(line["level"] == "WARNING" and line["logger"] == "scoreboard.security" for line in lines), lines
    assert "eyJ.abc.def" not in topology.log_text()


# Loopback is a /8: a client on 127.0.0.2 is not the proxy (127.0.0.1), as on a real network.
CLIENT_ADDRESS = "127.0.0.2"
FORGED = "203.0.113.9"
WS_HANDSHAKES_PER_MINUTE = 5


def _security_lines(topology: Topology, needle: str) -> list[dict[str, Any]]:
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        lines = [
            json.loads(line)
            for line in topology.log_text().splitlines()
            if line.startswith("{") and needle in line and '"scoreboard.security"' in line
        ]
        if lines or time.monotonic() > deadline:
            return lines
        time.sleep(0.2)


def test_a_forged_x_forwarded_for_is_not_believed_on_any_tier(topology: Topology) -> None:
    """The operator's walkthrough: a client sends its own X-Forwarded-For through nginx. The WSGI
    tier logs the real address, and on the ASGI tier the forged header buys no fresh handshake
    budget: the address the limit counts, and the log names, is the client's own."""
    transport = httpx.HTTPTransport(local_address=CLIENT_ADDRESS)
    with httpx.Client(base_url=topology.url, transport=transport) as client:
        refused = client.post(
            "/v1/scores/update",
            json={"action_token": "x"},
            headers={"Authorization": "Bearer forged", "X-Forwarded-For": FORGED},
        )
    assert refused.status_code == 401
    lines = _security_lines(topology, refused.headers["x-request-id"])
    assert [line["client_ip"] for line in lines] == [CLIENT_ADDRESS], lines

    ws_url = f"ws://127.0.0.1:{PORT}/v1/realtime"

    async def handshakes() -> list[bool]:
        accepted = []
        for i in range(WS_HANDSHAKES_PER_MINUTE + 1):
            forged = {"X-Forwarded-For": f"198.51.100.{i + 1}"}  # a new "address" every time
            try:
                async with websockets.connect(
                    ws_url,
                    additional_headers=forged,
                    local_addr=(CLIENT_ADDRESS, 0),
                    open_timeout=WAIT_SECONDS,
                ) as ws:
                    frame = json.loads(await asyncio.wait_for(ws.recv(), timeout=WAIT_SECONDS))
                    accepted.append(frame["type"] == "leaderboard_update")
            except (websockets.exceptions.InvalidStatus, websockets.exceptions.ConnectionClosed):
                accepted.append(False)
        return accepted

    assert asyncio.run(handshakes()) == [True] * WS_HANDSHAKES_PER_MINUTE + [False]
    refusals = _security_lines(topology, "websocket_rate_limited")
    assert refusals and {line["client_ip"] for line in refusals} == {CLIENT_ADDRESS}, refusals
    assert FORGED not in topology.log_text() and "198.51.100." not in topology.log_text()
    # nginx logged the real peer too.
    access = (topology.state_dir / "nginx" / "access.log").read_text()
    assert f'"{CLIENT_ADDRESS}"' in access


def test_readyz_stays_ready_with_redis_degraded_while_it_is_down(topology: Topology) -> None:
    assert httpx.get(f"{topology.url}/readyz").json()["data"]["checks"]["redis"] == "ok"
    _stop(topology.redis)
    try:
        down = httpx.get(f"{topology.url}/readyz")
        assert down.status_code == 200  # Redis is derived data: the service keeps serving from PostgreSQL
        data = down.json()["data"]
        assert data["status"] == "degraded"
        assert data["checks"] == {"database": "ok", "migrations": "ok", "redis": "degraded"}
    finally:
        topology.redis = _start_redis()
    deadline = time.monotonic() + WAIT_SECONDS
    checks: dict[str, str] = {}
    while time.monotonic() < deadline:
        checks = httpx.get(f"{topology.url}/readyz").json()["data"]["checks"]
        if checks.get("redis") == "ok":
            break
        time.sleep(0.3)
    assert checks.get("redis") == "ok"
    assert topology.process.poll() is None, "the topology must survive a Redis outage"
