"""Start and stop the server processes a benchmark run needs, all on ports 8500-8599 / unix sockets.

``BENCH_PORTS=8350`` moves the whole range (base to base+23), so a developer sharing the machine
keeps the benchmark in the ports given to them.

The production topology on this machine: nginx in front, gunicorn (sync workers, WSGI) for REST,
uvicorn processes (ASGI) for WebSocket/SSE, a Celery worker; plus the baselines (the bare DRF
project under the same gunicorn configuration, and a bare ``websockets`` broadcast server).
Every process is started in its own session and stopped by its process group id.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
PORT_BASE = int(os.environ.get("BENCH_PORTS", "8500"))
NGINX_PORT = PORT_BASE  # the app, as clients see it (8500)
WSGI_PORT = PORT_BASE + 1  # gunicorn behind it
# deploy/serve.py with PORT=8500 also takes 8501 (gunicorn) and 8502-8503 (ASGI servers).
NGINX_BASELINE_PORT = PORT_BASE + 4  # the bare DRF project behind nginx
# The bench's own topology: its ASGI processes on TCP, as deploy/serve.py runs them (8502-8503; more
# processes take 8506 and up).
ASGI_PORTS = tuple(PORT_BASE + n for n in (2, 3, 6, 7, 8, 9))
WS_BASELINE_PORT = PORT_BASE + 5  # bare websockets broadcast server (direct)
# BENCH_ASGI_REUSEPORT groups: the uvicorn processes of a group share one SO_REUSEPORT port (kernel balancing).
REUSEPORT_PORTS = tuple(PORT_BASE + n for n in (20, 21, 22, 23))
REUSEPORT_SCRIPT = ROOT / "deploy" / "reuseport.py"
SERVE_SCRIPT = ROOT / "deploy" / "serve.py"
GUNICORN_CONF = ROOT / "deploy" / "gunicorn.conf.py"
NOFILE_WANTED = 20_000

NGINX_CONF = """
{main_tuning}
user root;
pid {run}/nginx.pid;
error_log {run}/nginx.error.log warn;
http {{
{http_tuning}
    client_body_temp_path {run}/body;
    proxy_temp_path {run}/proxy;
    fastcgi_temp_path {run}/fastcgi;
    uwsgi_temp_path {run}/uwsgi;
    scgi_temp_path {run}/scgi;
    # The load generator's keep-alive connections carry thousands of requests each.
    keepalive_requests 1000000;
{app}
    upstream baseline {{ server unix:{run}/baseline.sock; }}
    server {{
        listen 127.0.0.1:{baseline_port} backlog=8192;
        access_log off;
        location / {{ proxy_pass http://baseline; proxy_set_header Host $host; }}
    }}
}}
"""


@functools.cache
def _serve_module() -> Any:
    """deploy/serve.py (a script, not a package): the production nginx settings and site template,
    the live-board flags and priority. Loaded once."""
    spec = importlib.util.spec_from_file_location("scoreboard_deploy_serve", SERVE_SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def nginx_conf(run_dir: Path, asgi: list[str], own_app: bool) -> str:
    """The bench's nginx.conf: production's worker settings and, for its own topology, production's site
    (deploy/nginx/scoreboard.conf.template, rendered by deploy/serve.py) in front of the bench's processes."""
    serve = _serve_module()
    app = ""
    if own_app:
        app = serve.render_site(
            listen=f"127.0.0.1:{NGINX_PORT} {serve.NGINX_LISTEN_OPTIONS}",
            wsgi=[f"127.0.0.1:{WSGI_PORT}"],
            asgi=asgi,
            access_log=str(run_dir / "access.log"),
            # Every simulated player comes from 127.0.0.1: nginx's per-address limits would be the test.
            limit_exempt=("127.0.0.1", "::1"),
        )
    return NGINX_CONF.format(
        main_tuning="\n".join(serve.NGINX_MAIN_TUNING),
        http_tuning="\n".join(f"    {line}" for line in serve.NGINX_HTTP_TUNING),
        run=run_dir,
        baseline_port=NGINX_BASELINE_PORT,
        app=app,
    )


def reuseport_spec(spec: str) -> tuple[int, dict[str, str], int]:
    """``N[@NAME=VALUE...]`` -> (N processes, their extra environment, their nice value).

    ``4`` is production's group (at production's REALTIME_NICE); ``4@REALTIME_GC_FREEZE_CONNECTS=0`` the
    same with a setting changed; ``4@nice=10`` below the score updates (``nice -n 10`` and the sessions'
    autogroup nice, deploy/serve.py's ``nice_session``); ``4@sessions=1`` the four forked by one
    launcher, one session, so one scheduling group (bench/delivery_ab.py compares such groups side by side).
    """
    count, *extras = spec.split("@")
    env = dict(extra.split("=", 1) for extra in extras)
    nice = int(env.pop("nice", str(_serve_module().Plan.realtime_nice)))
    return int(count), env, nice


def raise_nofile() -> int:
    """Raise this process's open-file limit to the hard limit; returns the new soft limit."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else max(soft, NOFILE_WANTED)
    if want > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    return want


def rss_kb(pids: list[int]) -> int:
    """Resident set size of the given processes and their children (VmRSS, KB).

    Children count because a server may fork workers (uvicorn does when WEB_CONCURRENCY is set).
    """
    total = 0
    for pid in {*pids, *(kid for parent in pids for kid in children(parent))}:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total


def process_cpu_seconds(pids: list[int]) -> dict[int, float]:
    """User + system CPU seconds of each of these processes and their children, by pid."""
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[int, float] = {}
    for pid in {*pids, *(kid for parent in pids for kid in children(parent))}:
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            out[pid] = (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    return out


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time consumed so far by the given processes and their children."""
    return sum(process_cpu_seconds(pids).values())


def children(pid: int) -> list[int]:
    out: list[int] = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                out += [int(p) for p in (task / "children").read_text().split()]
    return out


def wait_for(check: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise RuntimeError(f"timed out waiting for {what}")


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def http_ok(port: int, path: str) -> bool:
    import http.client

    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", path)
        ok = conn.getresponse().status == 200
        conn.close()
        return ok
    except OSError:
        return False


@dataclass
class Topology:
    run_dir: Path
    env: dict[str, str]
    # As production (deploy/gunicorn.conf.py): on 2 cores, 6 sync workers cost 60% more CPU per update
    # than 2 (more processes time-sharing the caches, every worker woken for each connection), and 3
    # sustain more than 2 (each update waits on PostgreSQL and Redis for about a third of its time).
    wsgi_workers: int = int(os.environ.get("BENCH_WSGI_WORKERS", "3"))
    asgi_processes: int = int(os.environ.get("BENCH_ASGI_PROCESSES", "2"))
    # deploy/serve.py's REALTIME_PROCESSES: the live-board processes of the production path.
    realtime_processes: int = int(os.environ.get("BENCH_REALTIME_PROCESSES", "4"))
    celery: bool = True
    kind: str = field(default_factory=lambda: os.environ.get("BENCH_TOPOLOGY", "own"))
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    serve_pids: dict[str, int] = field(default_factory=dict)

    def _spawn(
        self, name: str, argv: list[str], env: dict[str, str] | None = None, cwd: Path | str = ROOT
    ) -> subprocess.Popen[bytes]:
        log = open(self.run_dir / f"{name}.log", "wb")  # noqa: SIM115 (lives as long as the process)
        proc = subprocess.Popen(  # noqa: S603 (fixed argv)
            argv, cwd=cwd, env=env or self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.procs[name] = proc
        return proc

    def gunicorn_argv(self, app: str, sock: str) -> list[str]:
        """deploy/gunicorn.conf.py when it exists (the production settings), else the same flags inline."""
        bind = sock if sock[0].isdigit() else f"unix:{self.run_dir / sock}"
        if GUNICORN_CONF.exists():
            return [str(VENV_BIN / "gunicorn"), "-c", str(GUNICORN_CONF), "--bind", bind, app]
        return [
            str(VENV_BIN / "gunicorn"),
            app,
            "--workers",
            str(self.wsgi_workers),
            "--worker-class",
            "sync",
            "--bind",
            bind,
            "--backlog",
            "4096",
            "--log-level",
            "warning",
        ]

    def start_app(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        # Every collection of 1 ms or more, per process (scoreboard/gcpauses.py): the delivery steps count them.
        self.gc_log_dir.mkdir(parents=True, exist_ok=True)
        self.env = dict(self.env, WEB_CONCURRENCY=str(self.wsgi_workers), GC_PAUSE_LOG=str(self.gc_log_dir))
        if self.kind == "serve":
            self._start_serve()
        else:
            self._start_own()
        base_env = dict(self.env, DJANGO_SETTINGS_MODULE="bench.baseline_drf.settings")
        base_env["WEB_CONCURRENCY"] = str(self.wsgi_workers)
        self._spawn(
            "baseline_drf", self.gunicorn_argv("bench.baseline_drf.wsgi:application", "baseline.sock"), base_env
        )
        conf = nginx_conf(self.run_dir, self.asgi_addresses(), own_app=self.kind != "serve")
        (self.run_dir / "nginx.conf").write_text(conf)
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        self._spawn(
            "nginx", [nginx, "-c", str(self.run_dir / "nginx.conf"), "-p", str(self.run_dir), "-g", "daemon off;"]
        )
        wait_for((self.run_dir / "baseline.sock").exists, "baseline.sock")
        wait_for(lambda: port_open(NGINX_PORT), "nginx", timeout=120)
        # Workers import Django after the socket exists: wait until the app and the baseline answer.
        wait_for(lambda: http_ok(NGINX_PORT, "/v1/leaderboard"), "the app behind nginx", timeout=120)
        wait_for(lambda: http_ok(NGINX_BASELINE_PORT, "/ping"), "the bare DRF baseline", timeout=120)
        self.check_alive()

    def _start_serve(self) -> None:
        """The project's own production topology: deploy/serve.py (nginx, gunicorn, ASGI servers, Celery)."""
        env = dict(
            self.env,
            PORT=str(NGINX_PORT),
            HOST="127.0.0.1",
            STATE_DIR=str(self.run_dir / "serve"),
            SERVE_SKIP_MIGRATE="1",
            WEB_CONCURRENCY=str(self.wsgi_workers),
            ASGI_PROCESSES=str(self.asgi_processes),
            CELERY="1" if self.celery else "0",
            # The kernel-balanced live-board path, as production runs it (the delivery headline).
            REALTIME_PORT=str(REUSEPORT_PORTS[0]),
            REALTIME_PROCESSES=str(self.realtime_processes),
        )
        self._spawn("serve", [sys.executable, str(SERVE_SCRIPT), "start"], env)
        state = self.run_dir / "serve" / "serve.json"

        def ready() -> bool:
            self.check_alive()
            try:
                return bool(json.loads(state.read_text()).get("ready"))
            except (OSError, ValueError):
                return False

        wait_for(ready, "deploy/serve.py to report ready", timeout=180)
        self.serve_pids = {k: int(v) for k, v in json.loads(state.read_text())["pids"].items()}

    def _start_own(self) -> None:
        # TCP like deploy/serve.py: over a unix socket REMOTE_ADDR is empty and the app sees no client address.
        self._spawn("gunicorn", self.gunicorn_argv("scoreboard.wsgi:application", f"127.0.0.1:{WSGI_PORT}"))
        # BENCH_ASGI_APPS (comma-separated, one per process) serves another ASGI app from some of
        # them: bench/delivery_ab.py compares variants of the app side by side.
        apps = [a for a in os.environ.get("BENCH_ASGI_APPS", "").split(",") if a]
        # BENCH_ASGI_CWDS: a checkout to serve the app from, per process (e.g. an older commit's tree).
        cwds = os.environ.get("BENCH_ASGI_CWDS", "").split(",")
        uvicorn_flags = [
            "--workers",  # explicit: uvicorn would otherwise fork WEB_CONCURRENCY workers
            "1",
            "--loop",
            "uvloop",
            "--http",
            "httptools",
            # As deploy/serve.py: the sans-I/O protocol, per-message compression off.
            "--ws",
            "realtime.protocol:LeanWebSocketProtocol",
            "--ws-per-message-deflate",
            "false",
            "--no-access-log",
            "--log-level",
            "warning",
        ]
        for i in range(self.asgi_processes):
            self._spawn(
                f"uvicorn{i}",
                [
                    str(VENV_BIN / "uvicorn"),
                    apps[i] if i < len(apps) else "scoreboard.asgi:application",
                    *self._asgi_listen_args(i),
                    *uvicorn_flags,
                    "--backlog",
                    "8192",
                ],
                cwd=(cwds[i] if i < len(cwds) else "") or ROOT,
            )
        # BENCH_ASGI_REUSEPORT=2,4: more uvicorn processes, in groups sharing one SO_REUSEPORT port each
        # (deploy/reuseport.py): production's live-board path (deploy/serve.py's REALTIME_PORT, four
        # processes, no proxy in the frame path) with its flags and environment, and bench/delivery_ab.py's
        # "reuseportN" variants.
        serve = _serve_module()
        for spec, port in self.reuseport_ports().items():
            count, env, nice = reuseport_spec(spec)
            # sessions=1: one launcher forks the group (reuseport.py --processes): one scheduling group.
            launchers, each = (1, count) if env.pop("sessions", "") == "1" else (count, 1)
            for i in range(launchers):
                proc = self._spawn(
                    f"uvicornR{spec}-{i}",
                    serve.niced(
                        [
                            *(sys.executable, str(REUSEPORT_SCRIPT), "--host", "127.0.0.1", "--port", str(port)),
                            *(["--processes", str(each)] if each > 1 else []),
                            *("--", str(VENV_BIN / "uvicorn"), "scoreboard.asgi:application"),
                            *uvicorn_flags,
                            "--no-proxy-headers",
                        ],
                        nice,
                    ),
                    dict(self.env, **serve.REALTIME_DIRECT_ENV, **env),
                )
                serve.nice_session(proc.pid, nice)
        if self.celery:
            self._spawn(
                "celery",
                [
                    *(str(VENV_BIN / "celery"), "-A", "scoreboard", "worker", "--beat", "-c", "1"),
                    # A schedule of this run's own: a file left by an earlier run (in the checkout) had
                    # its jobs overdue, so they all ran at once, inside the first measurement.
                    *("--schedule", str(self.run_dir / "celerybeat-schedule"), "--loglevel", "warning"),
                ],
            )
        for address in self.asgi_addresses():
            if address.startswith("unix:"):
                wait_for(Path(address[5:]).exists, address)
            else:
                port = int(address.rsplit(":", 1)[1])
                wait_for(functools.partial(port_open, port), address)
        for port in self.reuseport_ports().values():
            wait_for(functools.partial(port_open, port), f"reuseport :{port}")
        wait_for(lambda: port_open(WSGI_PORT), "gunicorn")

    def wsgi_swap(self, app: str) -> None:
        """Serve another WSGI application from the app's gunicorn address (the same nginx site and
        upstream, the same gunicorn config): the served lean floor's ladder, then the app again.
        The bench's own topology only (``BENCH_TOPOLOGY=serve`` supervises its own gunicorn)."""
        if self.kind == "serve":
            raise RuntimeError("wsgi_swap needs the bench's own topology")
        self.stop("gunicorn")
        wait_for(lambda: not port_open(WSGI_PORT), "the old gunicorn to close its port")
        self._spawn("gunicorn", self.gunicorn_argv(app, f"127.0.0.1:{WSGI_PORT}"))
        wait_for(lambda: port_open(WSGI_PORT), "gunicorn", timeout=60)
        # nginx may have marked the upstream failed while it was down (max_fails / fail_timeout).
        wait_for(lambda: http_ok(NGINX_PORT, "/v1/leaderboard"), f"{app} behind nginx", timeout=60)

    @property
    def gc_log_dir(self) -> Path:
        return self.run_dir / "gc"

    def reuseport_ports(self) -> dict[str, int]:
        """Each BENCH_ASGI_REUSEPORT group (its spec, see ``reuseport_spec``) -> the port its processes share."""
        if self.kind == "serve":  # deploy/serve.py's own live-board processes (REALTIME_PORT)
            return {str(self.realtime_processes): REUSEPORT_PORTS[0]}
        specs = [c for c in os.environ.get("BENCH_ASGI_REUSEPORT", "").split(",") if c]
        return dict(zip(specs, REUSEPORT_PORTS, strict=False))

    def reuseport_pids(self, spec: str) -> list[int]:
        if self.kind == "serve":
            self.asgi_pids()  # re-reads the state file
            return [pid for name, pid in self.serve_pids.items() if name.startswith("realtime")]
        return [proc.pid for name, proc in self.procs.items() if name.startswith(f"uvicornR{spec}-")]

    def _asgi_kinds(self) -> list[str]:
        # BENCH_ASGI_LISTEN: "tcp" (as deploy/serve.py) or "unix", for all processes or one per process.
        kinds = [k for k in os.environ.get("BENCH_ASGI_LISTEN", "tcp").split(",") if k]
        return [kinds[i] if i < len(kinds) else kinds[-1] for i in range(self.asgi_processes)]

    def asgi_addresses(self) -> list[str]:
        """Where the ASGI processes listen, as nginx's ``server`` (and bench/wsclients.py's ``--connect``) take it."""
        if self.kind == "serve":
            return [f"127.0.0.1:{NGINX_PORT + 2 + i}" for i in range(self.asgi_processes)]
        return [
            f"unix:{self.run_dir / f'asgi{i}.sock'}" if kind == "unix" else f"127.0.0.1:{ASGI_PORTS[i]}"
            for i, kind in enumerate(self._asgi_kinds())
        ]

    def _asgi_listen_args(self, i: int) -> list[str]:
        address = self.asgi_addresses()[i]
        if address.startswith("unix:"):
            return ["--uds", address[5:]]
        return ["--host", "127.0.0.1", "--port", address.rsplit(":", 1)[1]]

    def wsgi_master(self) -> int:
        return self.serve_pids["wsgi"] if self.kind == "serve" else self.procs["gunicorn"].pid

    def asgi_pids(self) -> list[int]:
        if self.kind == "serve":
            # Re-read the state file: the supervisor rewrites it when it restarts a child.
            with contextlib.suppress(OSError, ValueError, KeyError):
                state = json.loads((self.run_dir / "serve" / "serve.json").read_text())
                self.serve_pids = {k: int(v) for k, v in state["pids"].items()}
            return [pid for name, pid in self.serve_pids.items() if name.startswith("asgi")]
        return [proc.pid for name, proc in self.procs.items() if name.startswith("uvicorn") and "R" not in name]

    def start_ws_baseline(self, rate: float, frame_bytes: int) -> subprocess.Popen[bytes]:
        proc = self._spawn(
            "ws_baseline",
            [
                sys.executable,
                "-m",
                "bench.ws_baseline",
                "--port",
                str(WS_BASELINE_PORT),
                "--rate",
                str(rate),
                "--frame-bytes",
                str(frame_bytes),
            ],
        )
        wait_for(lambda: port_open(WS_BASELINE_PORT), "ws baseline")
        return proc

    def stop(self, name: str) -> None:
        proc = self.procs.pop(name, None)
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)

    def stop_all(self) -> None:
        for name in list(self.procs):
            self.stop(name)
        # deploy/serve.py stops its children on SIGTERM; make sure none outlived it.
        marker = f"STATE_DIR={self.run_dir / 'serve'}".encode()
        for pid in self.serve_pids.values():
            with contextlib.suppress(OSError):
                # Only a process that still carries this run's STATE_DIR is ours (pids get reused).
                if marker in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
                    os.kill(pid, signal.SIGKILL)
        self.serve_pids = {}

    def check_alive(self) -> None:
        dead = [name for name, proc in self.procs.items() if proc.poll() is not None]
        if dead:
            logs = {n: (self.run_dir / f"{n}.log").read_text(errors="replace")[-2000:] for n in dead}
            raise RuntimeError(f"server processes died: {dead}\n{logs}")


def gc_pauses(log_dir: Path, pids: list[int], since: float, until: float) -> dict[str, Any]:
    """The garbage collections of ``pids`` that started in ``[since, until)`` (epoch seconds), by generation.

    Read from the ``gc-<pid>.log`` files scoreboard/gcpauses.py writes under ``GC_PAUSE_LOG`` (every
    collection of 1 ms or more): count, longest and total ms per generation, and the longest of each process.
    """
    by_gen: dict[str, dict[str, float]] = {}
    longest: dict[str, float] = {}
    for pid in pids:
        path = log_dir / f"gc-{pid}.log"
        with contextlib.suppress(OSError):
            for line in path.read_text().splitlines():
                parts = line.split()
                if len(parts) < 3:
                    continue
                at, gen, ms = float(parts[0]), parts[1], float(parts[2])
                if not since <= at < until:
                    continue
                row = by_gen.setdefault(f"gen{gen}", {"count": 0, "max_ms": 0.0, "total_ms": 0.0})
                row["count"] += 1
                row["max_ms"] = max(row["max_ms"], ms)
                row["total_ms"] = round(row["total_ms"] + ms, 3)
                longest[str(pid)] = max(longest.get(str(pid), 0.0), ms)
    return {"by_generation": dict(sorted(by_gen.items())), "longest_by_process": longest}
