"""deploy/reuseport.py: several uvicorn processes on one SO_REUSEPORT port, balanced by the kernel,
each seeing the real peer address; and `make serve`'s REALTIME_PORT, which starts them."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import websockets

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "deploy"))
import serve  # noqa: E402

pytestmark = pytest.mark.embedded

PORT = 8478  # tests/ops uses 8470-8479
PROCESSES = 2
SOCKETS = 24
START_SECONDS = 30


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def test_processes_sharing_a_port_each_take_connections_and_see_the_real_peer(tmp_path: Path) -> None:
    cmd = [sys.executable, str(ROOT / "deploy" / "reuseport.py"), "--port", str(PORT), "--"]
    cmd += [sys.executable, "-m", "uvicorn", "tests.ops.reuseport_app:app", "--log-level", "warning"]
    cmd += ["--lifespan", "off", "--ws", "websockets-sansio", "--no-proxy-headers"]
    procs = [
        subprocess.Popen(cmd, cwd=ROOT, stdout=(tmp_path / f"{i}.log").open("wb"), stderr=subprocess.STDOUT)
        for i in range(PROCESSES)
    ]
    try:
        deadline = time.monotonic() + START_SECONDS
        while not _listening(PORT) and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.0)  # the second process binds too

        async def connect_all() -> list[dict[str, object]]:
            seen = []
            for _ in range(SOCKETS):
                async with websockets.connect(f"ws://127.0.0.1:{PORT}/") as ws:
                    seen.append(json.loads(await ws.recv()))
            return seen

        seen = asyncio.run(connect_all())
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=10)
    # The processes replaced the launcher (exec): the pids are theirs.
    assert {s["pid"] for s in seen} == {p.pid for p in procs}
    assert {s["client"][0] for s in seen} == {"127.0.0.1"}  # type: ignore[index]


def test_realtime_port_starts_kernel_balanced_processes_that_trust_no_forwarded_header(tmp_path: Path) -> None:
    plan = serve.plan_from_env({"PORT": "8490", "STATE_DIR": str(tmp_path), "REALTIME_PORT": "8497"})
    cmds = dict(serve.commands(plan, tmp_path / "nginx.conf"))
    direct = [cmd for name, cmd in cmds.items() if name.startswith("realtime-")]
    assert len(direct) == serve.Plan.realtime_processes == 4
    for cmd in direct:
        assert cmd[1] == str(serve.REUSEPORT_SCRIPT) and cmd[cmd.index("--port") + 1] == "8497"
        assert "--no-proxy-headers" in cmd and "--proxy-headers" not in cmd
        assert serve.WS_PROTOCOL in cmd
    assert serve.REALTIME_DIRECT_ENV == {"TRUSTED_PROXIES": ""}
    # The nginx path stays as it was.
    assert "--proxy-headers" in cmds["asgi-1"]
    env = serve.child_env(plan, {})
    assert env["REALTIME_PUBLIC_URL"] == "ws://127.0.0.1:8497"  # the page sends browsers there
    # The default: on PORT+10. REALTIME_PORT=0: the nginx path only, and the page uses its own origin.
    assert serve.plan_from_env({"PORT": "8490"}).realtime_port == 8500
    off = serve.plan_from_env({"PORT": "8490", "REALTIME_PORT": "0"})
    plain = serve.commands(off, tmp_path / "nginx.conf")
    assert not [name for name, _ in plain if name.startswith("realtime")]
    assert "REALTIME_PUBLIC_URL" not in serve.child_env(off, {})


def test_realtime_nice_puts_the_live_board_processes_below_the_score_updates(tmp_path: Path) -> None:
    def realtime(env: dict[str, str]) -> list[list[str]]:
        plan = serve.plan_from_env({"PORT": "8490", "STATE_DIR": str(tmp_path), **env})
        return [cmd for name, cmd in serve.commands(plan, tmp_path / "nginx.conf") if name.startswith("realtime-")]

    assert serve.Plan.realtime_nice == 0  # the default: equal weight (docs/benchmarks.md, "Scheduling groups")
    assert all(cmd[:2] == [serve.sys.executable, str(serve.REUSEPORT_SCRIPT)] for cmd in realtime({}))
    niced = realtime({"REALTIME_NICE": "10"})
    assert len(niced) == 4 and all(cmd[:4] == ["nice", "-n", "10", serve.sys.executable] for cmd in niced)
    plan = serve.plan_from_env({"PORT": "8490", "STATE_DIR": str(tmp_path), "REALTIME_NICE": "10"})
    others = [cmd for name, cmd in serve.commands(plan, tmp_path / "nginx.conf") if not name.startswith("realtime-")]
    assert others and not [cmd for cmd in others if cmd[0] == "nice"]  # gunicorn, Celery, nginx: as they were


@pytest.mark.skipif(not Path("/proc/self/autogroup").exists(), reason="a kernel without autogroup scheduling")
def test_nice_session_lowers_the_weight_of_the_childs_whole_session_only() -> None:
    """With autogroup scheduling a process's nice counts only inside its session: the session is niced."""
    mine = Path("/proc/self/autogroup").read_text()
    child = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        serve.nice_session(child.pid, 7)
        assert Path(f"/proc/{child.pid}/autogroup").read_text().split()[-2:] == ["nice", "7"]
        assert Path("/proc/self/autogroup").read_text() == mine  # the supervisor's own group is untouched
        serve.nice_session(child.pid, 0)  # 0: leave it as it is
        assert Path(f"/proc/{child.pid}/autogroup").read_text().split()[-2:] == ["nice", "7"]
    finally:
        child.kill()
        child.wait()
    serve.nice_session(child.pid, 5)  # gone meanwhile: nothing to do, nothing raised


def test_processes_n_supervises_n_servers_and_stops_them_together() -> None:
    """A container's one command: ``--processes 2`` runs two servers on the port and stops with them."""
    port = 8477
    cmd = [sys.executable, str(ROOT / "deploy" / "reuseport.py"), "--port", str(port), "--processes", "2", "--"]
    cmd += [sys.executable, "-m", "uvicorn", "tests.ops.reuseport_app:app", "--log-level", "warning"]
    cmd += ["--lifespan", "off", "--ws", serve.WS_PROTOCOL, "--no-proxy-headers"]
    launcher = subprocess.Popen(cmd, cwd=ROOT)
    try:
        deadline = time.monotonic() + START_SECONDS
        while not _listening(port) and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.0)

        async def connect_all() -> set[int]:
            pids = set()
            for _ in range(SOCKETS):
                async with websockets.connect(f"ws://127.0.0.1:{port}/") as ws:
                    pids.add(int(json.loads(await ws.recv())["pid"]))
            return pids

        pids = asyncio.run(connect_all())
        assert len(pids) == 2 and launcher.pid not in pids
        launcher.terminate()  # SIGTERM to the launcher reaches both servers
        assert launcher.wait(timeout=15) == 0
        assert not _listening(port)
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait()
