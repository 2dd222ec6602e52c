#!/usr/bin/env python3
"""Run the production topology on this machine: nginx -> gunicorn (WSGI) + N ASGI servers + Celery.

    deploy/serve.py start     # foreground; Ctrl-C or SIGTERM stops every child
    deploy/serve.py stop      # stops a topology started elsewhere (reads its state dir)
    deploy/serve.py status    # prints the state file of a running topology
    deploy/serve.py render-nginx --wsgi api:8000 --asgi realtime:8001 --listen 8080

Everything is set by the environment (``make serve`` passes it through):

    DATABASE_URL, REDIS_URL   required
    PORT=8000 HOST=127.0.0.1  where nginx listens
    WSGI_PORT=PORT+1          gunicorn (WEB_CONCURRENCY=3 sync workers)
    ASGI_BASE_PORT=PORT+2     first ASGI server; ASGI_PROCESSES=2 of them on consecutive ports
    ASGI_SERVER=uvicorn       or daphne
    NGINX_LIMIT_EXEMPT        client addresses nginx's per-address limits skip (a local load generator)
    REALTIME_PORT=PORT+10     REALTIME_PROCESSES=4 uvicorn processes sharing this one port with
                              SO_REUSEPORT (deploy/reuseport.py): WebSocket/SSE straight from the
                              ASGI process to the client, the kernel balancing (docs/benchmarks.md,
                              "Delivery path A/B"); no proxy, so each sees the real peer address and
                              trusts no X-Forwarded-For; the open sockets per address are capped
                              across the processes (REALTIME_WS_PER_ADDRESS, realtime/connection_cap.py).
                              The page tells browsers to connect there (REALTIME_PUBLIC_URL, default
                              ws://HOST:REALTIME_PORT). REALTIME_PORT=0: none (browsers use nginx on PORT).
    REALTIME_NICE=0           > 0: the live-board processes run below the score updates (nice, and their
                              sessions' autogroup nice): on a box the audience saturates the updates keep
                              their cores and the fan-out skips to the newest snapshot, at the price of a
                              slower fan-out while the box has room (docs/benchmarks.md, "Scheduling groups")
    CELERY=1                  Celery worker with embedded beat (CELERY_CONCURRENCY=1); 0 = none
    METRICS_PORT=PORT+9       /metrics on this port (python -m scoreboard.metrics_server), never on PORT; 0: none
    STATE_DIR=.state/serve-PORT   nginx config, metrics files, pids, ready marker
    SERVE_SKIP_MIGRATE=1      skip migrate/collectstatic/rebuild_leaderboard (a caller that did them)

With DJANGO_DEBUG unset the processes run in production mode (DJANGO_DEBUG=0), which refuses
development secrets: secrets missing from the environment are generated once into
.state/secrets.env (mode 0600, local use only) and reused on the next start.

Only the standard library is used here, so it runs before anything else is set up.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "deploy" / "nginx" / "scoreboard.conf.template"
SECRET_NAMES = ("DJANGO_SECRET_KEY", "JWT_SECRET", "ACTION_TOKEN_SECRET")
READY_TIMEOUT_SECONDS = 90
WS_MAX_SIZE = 4096  # realtime/consumers.py MAX_INBOUND_BYTES
STOP_TIMEOUT_SECONDS = 15


def log(message: str) -> None:
    print(f"[serve] {message}", file=sys.stderr, flush=True)


@dataclass
class Plan:
    host: str
    port: int
    wsgi_port: int
    wsgi_workers: int
    asgi_ports: list[int]
    asgi_server: str
    celery: bool
    celery_concurrency: int
    metrics_port: int | None
    state_dir: Path
    python: str
    bin_dir: Path
    limit_exempt: tuple[str, ...] = ()
    realtime_port: int | None = None
    realtime_processes: int = 4
    # The live-board processes' CPU priority under the score updates' (nice_session): 0 = equal.
    realtime_nice: int = 0
    pids: dict[str, int] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["state_dir"] = str(self.state_dir)
        data["bin_dir"] = str(self.bin_dir)
        data["url"] = self.url
        return data


def plan_from_env(env: dict[str, str]) -> Plan:
    port = int(env.get("PORT", "8000"))
    asgi_base = int(env.get("ASGI_BASE_PORT", str(port + 2)))
    asgi_count = int(env.get("ASGI_PROCESSES", "2"))
    # /metrics is never on the public port: its own port, PORT+9 unless METRICS_PORT says (0: none).
    metrics_port = env.get("METRICS_PORT", str(port + 9))
    metrics_port = "" if metrics_port == "0" else metrics_port
    python = env.get("SERVE_PYTHON") or sys.executable
    return Plan(
        host=env.get("HOST", "127.0.0.1"),
        port=port,
        wsgi_port=int(env.get("WSGI_PORT", str(port + 1))),
        wsgi_workers=int(env.get("WEB_CONCURRENCY", "3")),
        asgi_ports=[asgi_base + i for i in range(asgi_count)],
        asgi_server=env.get("ASGI_SERVER", "uvicorn"),
        celery=env.get("CELERY", "1") not in ("0", "false", "no", ""),
        celery_concurrency=int(env.get("CELERY_CONCURRENCY", "1")),
        metrics_port=int(metrics_port) if metrics_port else None,
        state_dir=Path(env.get("STATE_DIR") or ROOT / ".state" / f"serve-{port}").resolve(),
        python=python,
        bin_dir=Path(python).parent,
        limit_exempt=tuple(a.strip() for a in env.get("NGINX_LIMIT_EXEMPT", "").split(",") if a.strip()),
        # The live board's WebSocket/SSE path by default (docs/benchmarks.md, "Delivery path A/B"):
        # PORT+10 unless REALTIME_PORT says; REALTIME_PORT=0 leaves only the nginx path.
        realtime_port=realtime_port if (realtime_port := int(env.get("REALTIME_PORT") or port + 10)) else None,
        realtime_processes=int(env.get("REALTIME_PROCESSES", "4")),
        realtime_nice=int(env.get("REALTIME_NICE", "0")),
    )


# ---------------------------------------------------------------------------------------------
# nginx
# ---------------------------------------------------------------------------------------------
# Repeated in every location: a location that sets any proxy header inherits none from the server.
# X-Request-ID: one id from the edge to the last log line (Django binds it and echoes it back).
PROXY_HEADERS = "\n".join(
    f"        proxy_set_header {header};"
    for header in (
        "Host $host",
        "X-Forwarded-For $proxy_add_x_forwarded_for",
        "X-Forwarded-Proto $scheme",
        "X-Request-ID $request_id",
    )
)


def render_site(
    *, listen: str, wsgi: list[str], asgi: list[str], access_log: str, limit_exempt: tuple[str, ...] = ()
) -> str:
    """The http-level nginx config (upstreams + server) for these upstream addresses.

    ``limit_exempt``: client addresses (or CIDRs) nginx's per-address limits skip, e.g. a load generator.
    """
    servers = {
        "LIMIT_EXEMPT": "\n".join(f"    {a} 1;" for a in limit_exempt) or "    # (none)",
        "WSGI_SERVERS": "\n".join(f"    server {a} max_fails=3 fail_timeout=5s;" for a in wsgi),
        "ASGI_SERVERS": "\n".join(f"    server {a} max_fails=3 fail_timeout=5s;" for a in asgi),
        "PROXY_HEADERS": PROXY_HEADERS,
        "LISTEN": listen,
        "ACCESS_LOG": access_log,
    }
    text = TEMPLATE.read_text()
    for key, value in servers.items():
        text = text.replace("{{" + key + "}}", value)
    if re.search(r"\{\{[A-Z_]+\}\}", text):
        raise SystemExit(f"unfilled placeholder in {TEMPLATE}")
    return text


# Process and connection settings of nginx's main config, shared with the benchmark
# (bench/topology.py renders its nginx.conf from these and the site template).
NGINX_MAIN_TUNING = (
    # One worker per core: each proxied WebSocket frame costs nginx a read and a write.
    "worker_processes auto;",
    # Each proxied WebSocket holds two connections (client side and upstream): room for 10,000+ sockets.
    "worker_rlimit_nofile 65536;",
    # multi_accept: a worker takes every pending connection at once (reconnect storms).
    "events { worker_connections 32768; multi_accept on; }",
)
NGINX_HTTP_TUNING = ("sendfile on;", "tcp_nodelay on;", "keepalive_timeout 65;")
# The listen socket's queue: a reconnect storm of thousands of sockets must not overflow it.
NGINX_LISTEN_OPTIONS = "backlog=8192"


def render_main(*, state_dir: Path, site_path: Path) -> str:
    """A complete nginx.conf that keeps every file under ``state_dir`` (no system config touched)."""
    nginx_dir = state_dir / "nginx"
    mime = next((p for p in ("/etc/nginx/mime.types", "/usr/local/nginx/conf/mime.types") if Path(p).exists()), None)
    lines = [
        "# Generated by deploy/serve.py; edit deploy/nginx/scoreboard.conf.template instead.",
        NGINX_MAIN_TUNING[0],
        f"pid {nginx_dir / 'nginx.pid'};",
        "error_log stderr warn;",
        *NGINX_MAIN_TUNING[1:],
        "http {",
        f"    include {mime};" if mime else "    types { text/html html; text/css css; application/javascript js; }",
        "    default_type application/octet-stream;",
        *(f"    {line}" for line in NGINX_HTTP_TUNING),
        f"    client_body_temp_path {nginx_dir / 'tmp' / 'body'};",
        f"    proxy_temp_path {nginx_dir / 'tmp' / 'proxy'};",
        f"    fastcgi_temp_path {nginx_dir / 'tmp' / 'fastcgi'};",
        f"    uwsgi_temp_path {nginx_dir / 'tmp' / 'uwsgi'};",
        f"    scgi_temp_path {nginx_dir / 'tmp' / 'scgi'};",
        f"    include {site_path};",
        "}",
    ]
    if os.geteuid() == 0:
        # Workers may stay root only because every path is ours; never done for a system nginx.
        lines.insert(1, "user root;")
    return "\n".join(lines) + "\n"


def write_nginx_config(plan: Plan) -> Path:
    nginx_dir = plan.state_dir / "nginx"
    (nginx_dir / "tmp").mkdir(parents=True, exist_ok=True)
    site = nginx_dir / "scoreboard.conf"
    site.write_text(
        render_site(
            listen=f"{plan.host}:{plan.port} {NGINX_LISTEN_OPTIONS}",
            wsgi=[f"127.0.0.1:{plan.wsgi_port}"],
            asgi=[f"127.0.0.1:{p}" for p in plan.asgi_ports],
            access_log=str(nginx_dir / "access.log"),
            limit_exempt=plan.limit_exempt,
        )
    )
    main = nginx_dir / "nginx.conf"
    main.write_text(render_main(state_dir=plan.state_dir, site_path=site))
    return main


def nginx_binary() -> str:
    found = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if Path(p).exists()), None)
    if not found:
        raise SystemExit(
            "nginx is not installed. `make serve` installs it (apt-get install nginx); or install it yourself."
        )
    return found


# ---------------------------------------------------------------------------------------------
# Environment and secrets
# ---------------------------------------------------------------------------------------------
def load_or_make_secrets(env: dict[str, str]) -> list[str]:
    """Fill missing secrets from .state/secrets.env, generating it once. Returns the names generated."""
    missing = [n for n in SECRET_NAMES if not env.get(n)]
    if not missing:
        return []
    path = ROOT / ".state" / "secrets.env"
    stored: dict[str, str] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            if "=" in line and not line.startswith("#"):
                key, value = line.split("=", 1)
                stored[key] = value
    for name in SECRET_NAMES:
        stored.setdefault(name, secrets.token_urlsafe(48))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write("# Throwaway secrets for `make serve` on this machine only. Never use them elsewhere.\n")
        handle.writelines(f"{k}={stored[k]}\n" for k in SECRET_NAMES)
    for name in missing:
        env[name] = stored[name]
    return missing


def child_env(plan: Plan, base: dict[str, str]) -> dict[str, str]:
    env = dict(base)
    env.setdefault("DJANGO_SETTINGS_MODULE", "scoreboard.settings")
    env.setdefault("DJANGO_DEBUG", "0")
    env.setdefault("LOG_FORMAT", "json")
    # nginx is the only peer; the client address is the hop nginx appended to X-Forwarded-For.
    env.setdefault("TRUSTED_PROXIES", "127.0.0.1,::1")
    if plan.realtime_port:
        # The page (rendered by gunicorn) sends browsers' WebSockets to the kernel-balanced port.
        env.setdefault("REALTIME_PUBLIC_URL", f"ws://{plan.host}:{plan.realtime_port}")
    env["PROMETHEUS_MULTIPROC_DIR"] = str(plan.state_dir / "prometheus")
    env["PYTHONUNBUFFERED"] = "1"
    return env


# ---------------------------------------------------------------------------------------------
# Processes
# ---------------------------------------------------------------------------------------------
def port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


REUSEPORT_SCRIPT = ROOT / "deploy" / "reuseport.py"
WS_PROTOCOL = "realtime.protocol:LeanWebSocketProtocol"
UVICORN_FLAGS = (
    # One process per port: uvicorn would otherwise fork WEB_CONCURRENCY workers (gunicorn's setting).
    *("--workers", "1"),
    *("--no-access-log", "--lifespan", "off"),
    # Frames over the 4 KB cap are refused by uvicorn itself (1009) instead of being buffered up to
    # its 16 MiB default first.
    *("--ws-max-size", str(WS_MAX_SIZE)),
    *("--timeout-graceful-shutdown", "5"),
    # The sans-I/O websockets protocol: no tasks per socket, less CPU per frame sent than
    # "websockets" (realtime/bench_fanout.py). Compression off: uvicorn would otherwise deflate every
    # frame separately for each browser (they all ask for it). realtime.protocol's subclass of it holds
    # about a fifth less memory per idle socket (bench/socket_memory.py).
    *("--ws", WS_PROTOCOL, "--ws-per-message-deflate", "false"),
)
# The directly reached processes have no proxy in front: nobody's X-Forwarded-For is trusted.
REALTIME_DIRECT_ENV = {"TRUSTED_PROXIES": ""}


def niced(cmd: list[str], nice: int) -> list[str]:
    """``cmd`` under ``nice -n NICE`` (every thread it starts inherits it); pair with ``nice_session``."""
    return ["nice", "-n", str(nice), *cmd] if nice > 0 else cmd


def nice_session(pid: int, nice: int) -> None:
    """Give the session ``pid`` leads (a child started with its own session) CPU weight ``nice``.

    ``nice -n`` alone does nothing against the other children on Linux with autogroup scheduling
    (``kernel.sched_autogroup_enabled``, on by default): every session is one scheduling group, and
    the groups share the cores equally whatever their processes' nice values, so four live-board
    processes outweigh gunicorn's three workers 4 to 1. The session's group is niced too
    (``/proc/PID/autogroup``); where that file is missing (no autogroup, other systems) the
    processes' own nice is what counts. Raising a nice value needs no privilege; a failure is logged.
    """
    autogroup = Path(f"/proc/{pid}/autogroup")
    if nice <= 0 or not autogroup.exists():
        return
    try:
        autogroup.write_text(str(nice))
    except OSError as exc:
        log(f"could not lower the CPU weight of pid {pid}'s session to nice {nice}: {exc}")


def commands(plan: Plan, nginx_conf: Path) -> list[tuple[str, list[str]]]:
    b = plan.bin_dir
    cmds: list[tuple[str, list[str]]] = [
        (
            "wsgi",
            [str(b / "gunicorn"), "-c", str(ROOT / "deploy" / "gunicorn.conf.py"), "scoreboard.wsgi:application"],
        ),
    ]
    for i, port in enumerate(plan.asgi_ports, start=1):
        if plan.asgi_server == "daphne":
            cmd = [str(b / "daphne"), "-v", "0", "-b", "127.0.0.1", "-p", str(port), "--proxy-headers"]
            cmd += ["--application-close-timeout", "5", "scoreboard.asgi:application"]
        else:
            cmd = [str(b / "uvicorn"), "scoreboard.asgi:application", "--host", "127.0.0.1", "--port", str(port)]
            # Only nginx (loopback) may set X-Forwarded-For.
            cmd += [*UVICORN_FLAGS, "--proxy-headers", "--forwarded-allow-ips", "127.0.0.1"]
        cmds.append((f"asgi-{i}", cmd))
    if plan.realtime_port:
        for i in range(1, plan.realtime_processes + 1):
            # Each its own SO_REUSEPORT listener on the shared port (the kernel spreads the connections),
            # and its own session: one scheduling group each under Linux's autogroup scheduler, which
            # keeps the fan-out fast while the box has room (docs/benchmarks.md, "Scheduling groups").
            cmd = [plan.python, str(REUSEPORT_SCRIPT), "--host", plan.host, "--port", str(plan.realtime_port), "--"]
            cmd += [str(b / "uvicorn"), "scoreboard.asgi:application", *UVICORN_FLAGS, "--no-proxy-headers"]
            cmds.append((f"realtime-{i}", niced(cmd, plan.realtime_nice)))
    if plan.celery:
        schedule = plan.state_dir / "celerybeat-schedule"
        cmd = [str(b / "celery"), "-A", "scoreboard", "worker", "--beat", "--schedule", str(schedule)]
        cmd += ["--concurrency", str(plan.celery_concurrency), "--loglevel", "INFO", "--without-mingle"]
        cmd += ["--without-gossip", "-n", f"scoreboard-{plan.port}@%h"]
        cmds.append(("celery", cmd))
    if plan.metrics_port:
        cmds.append(("metrics", [plan.python, "-m", "scoreboard.metrics_server"]))
    cmds.append(("nginx", [nginx_binary(), "-c", str(nginx_conf), "-g", "daemon off;"]))
    return cmds


def http_ok(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - loopback URL we built
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


class Topology:
    def __init__(self, plan: Plan, env: dict[str, str]) -> None:
        self.plan = plan
        self.env = env
        self.children: dict[str, subprocess.Popen[bytes]] = {}
        self.stopping = False

    @property
    def state_file(self) -> Path:
        return self.plan.state_dir / "serve.json"

    def write_state(self, ready: bool) -> None:
        data = self.plan.as_json()
        data["pids"] = {name: proc.pid for name, proc in self.children.items()}
        data["supervisor_pid"] = os.getpid()
        data["ready"] = ready
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2))
        tmp.replace(self.state_file)

    def spawn(self, name: str, cmd: list[str], extra_env: dict[str, str] | None = None, nice: int = 0) -> None:
        env = dict(self.env, **(extra_env or {}))
        # Own session: Ctrl-C reaches only this supervisor, which then stops children in order.
        self.children[name] = subprocess.Popen(cmd, cwd=ROOT, env=env, start_new_session=True)  # noqa: S603
        nice_session(self.children[name].pid, nice)
        log(f"started {name} (pid {self.children[name].pid}): {' '.join(cmd[:3])} ...")

    def run_manage(self, *args: str) -> None:
        result = subprocess.run([self.plan.python, "manage.py", *args], cwd=ROOT, env=self.env, check=False)  # noqa: S603
        if result.returncode != 0:
            raise SystemExit(f"manage.py {' '.join(args)} failed (exit {result.returncode})")

    def start(self) -> int:
        plan = self.plan
        busy = [
            p
            for p in [plan.port, plan.wsgi_port, *plan.asgi_ports, plan.metrics_port, plan.realtime_port]
            if p and not port_free(plan.host if p == plan.port else "127.0.0.1", p)
        ]
        if busy:
            raise SystemExit(f"port(s) {busy} already in use; set PORT (and WSGI_PORT/ASGI_BASE_PORT) to free ones")
        plan.state_dir.mkdir(parents=True, exist_ok=True)
        metrics_dir = plan.state_dir / "prometheus"
        shutil.rmtree(metrics_dir, ignore_errors=True)
        metrics_dir.mkdir()
        if self.env.get("SERVE_SKIP_MIGRATE") != "1":
            log("applying migrations, collecting static files, rebuilding the Redis index")
            self.run_manage("migrate", "--noinput", "-v", "0")
            self.run_manage("collectstatic", "--noinput", "-v", "0")
            # Redis is derived: whatever it holds (or lost), start from PostgreSQL's truth.
            self.run_manage("rebuild_leaderboard")
        nginx_conf = write_nginx_config(plan)
        test = subprocess.run([nginx_binary(), "-t", "-q", "-c", str(nginx_conf)], check=False)  # noqa: S603
        if test.returncode != 0:
            raise SystemExit(f"nginx rejected {nginx_conf}")
        for name, cmd in commands(plan, nginx_conf):
            extra = {"GUNICORN_BIND": f"127.0.0.1:{plan.wsgi_port}", "WEB_CONCURRENCY": str(plan.wsgi_workers)}
            if name == "metrics" and plan.metrics_port:
                extra["METRICS_PORT"] = str(plan.metrics_port)
            if name.startswith("realtime-"):
                self.spawn(name, cmd, REALTIME_DIRECT_ENV, nice=plan.realtime_nice)
            else:
                self.spawn(name, cmd, extra if name in ("wsgi", "metrics") else None)
        self.write_state(ready=False)
        if not self.wait_ready():
            self.stop()
            return 1
        self.write_state(ready=True)
        asgi = ", ".join(str(p) for p in plan.asgi_ports)
        log(
            f"Scoreboard is up on {plan.url}/  (nginx -> gunicorn {plan.wsgi_workers} workers on :{plan.wsgi_port}, "
            f"{plan.asgi_server} on :{asgi}{', celery worker+beat' if plan.celery else ''})"
        )
        if plan.metrics_port:
            log(f"metrics: http://127.0.0.1:{plan.metrics_port}/metrics (not on the public port)")
        if plan.realtime_port:
            log(
                f"realtime direct: ws://{plan.host}:{plan.realtime_port}/v1/realtime "
                f"({plan.realtime_processes} uvicorn processes on one SO_REUSEPORT port, kernel-balanced, no proxy)"
            )
        log(f"state: {plan.state_dir}   stop: Ctrl-C, or `deploy/serve.py stop` with the same PORT")
        return self.supervise()

    def wait_ready(self) -> bool:
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        checks = [f"{self.plan.url}/readyz"] + [f"http://127.0.0.1:{p}/healthz" for p in self.plan.asgi_ports]
        if self.plan.realtime_port:
            checks.append(f"http://{self.plan.host}:{self.plan.realtime_port}/healthz")
        while time.monotonic() < deadline and not self.stopping:
            dead = [n for n, p in self.children.items() if p.poll() is not None]
            if dead:
                log(f"{', '.join(dead)} exited during start-up; stopping")
                return False
            if all(http_ok(url) for url in checks):
                return True
            time.sleep(0.3)
        log("the topology did not become ready in time (is PostgreSQL/Redis reachable?)")
        return False

    def supervise(self) -> int:
        while not self.stopping:
            for name, proc in self.children.items():
                code = proc.poll()
                if code is not None:
                    log(f"{name} exited with {code}; stopping the topology")
                    self.stop()
                    return 1
            time.sleep(0.5)
        return 0

    def stop(self) -> None:
        """Stop in dependency order: nginx first (no new traffic), then the apps, then Celery."""
        self.stopping = True
        apps = [n for n in self.children if n.startswith(("asgi", "realtime"))]
        order = ["nginx", "metrics", *apps, "wsgi", "celery"]
        for name in order:
            proc = self.children.get(name)
            if proc is None or proc.poll() is not None:
                continue
            with contextlib.suppress(ProcessLookupError):
                # nginx: QUIT is its graceful stop; the others stop gracefully on TERM.
                os.killpg(proc.pid, signal.SIGQUIT if name == "nginx" else signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
        for name, proc in self.children.items():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log(f"{name} did not stop in time; killing it")
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        # The live gauges (open sockets) of a process that is gone (a child, or a worker one of them
        # forked, such as gunicorn's) must not outlive it in the shared metrics files.
        for stale in glob.glob(str(self.plan.state_dir / "prometheus" / "gauge_live*_*.db")):
            pid = stale.rsplit("_", 1)[1].removesuffix(".db")
            if not (pid.isdigit() and pid_alive(int(pid))):
                with contextlib.suppress(OSError):
                    os.unlink(stale)
        with contextlib.suppress(OSError):
            self.state_file.unlink()
        log("stopped")


def cmd_start(args: argparse.Namespace) -> int:
    env = dict(os.environ)
    missing = [n for n in ("DATABASE_URL", "REDIS_URL") if not env.get(n)]
    if missing:
        log(
            f"{' and '.join(missing)} not set. The production topology runs on PostgreSQL and Redis, e.g.\n"
            "    DATABASE_URL=postgres://postgres@127.0.0.1:5432/scoreboard \\\n"
            "    REDIS_URL=redis://127.0.0.1:6379/0 make serve\n"
            "(`make run` is the embedded single-process demo that needs neither)."
        )
        return 2
    plan = plan_from_env(env)
    running = read_state(plan.state_dir)
    if running and pid_alive(running.get("supervisor_pid")):
        log(f"already running (supervisor pid {running['supervisor_pid']}); stop it first: deploy/serve.py stop")
        return 1
    if env.get("DJANGO_DEBUG", "0").lower() in ("0", "false", "no", "off", ""):
        generated = load_or_make_secrets(env)
        if generated:
            log(
                f"production mode (DJANGO_DEBUG=0): {', '.join(generated)} not set, so throwaway values from "
                ".state/secrets.env are used (generated once, local use only); set real ones for anything else"
            )
    topology = Topology(plan, child_env(plan, env))

    def on_signal(signum: int, _frame: Any) -> None:
        if not topology.stopping:
            log(f"received {signal.Signals(signum).name}; stopping every process")
            topology.stop()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        return topology.start()
    except SystemExit:
        topology.stop()
        raise
    except BaseException:
        topology.stop()
        raise


def read_state(state_dir: Path) -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = json.loads((state_dir / "serve.json").read_text())
    except (OSError, ValueError):
        return None
    return data


def pid_alive(pid: Any) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def cmd_stop(args: argparse.Namespace) -> int:
    plan = plan_from_env(dict(os.environ))
    state = read_state(plan.state_dir)
    if state is None:
        log(f"nothing running for {plan.state_dir}")
        return 0
    supervisor = state.get("supervisor_pid")
    if isinstance(supervisor, int) and pid_alive(supervisor):
        os.kill(supervisor, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_SECONDS + 5
        while pid_alive(supervisor) and time.monotonic() < deadline:
            time.sleep(0.2)
    # The supervisor was killed outright: stop the children it recorded.
    for name, pid in state.get("pids", {}).items():
        if pid_alive(pid):
            log(f"stopping orphaned {name} (pid {pid})")
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGTERM)
    with contextlib.suppress(OSError):
        (plan.state_dir / "serve.json").unlink()
    log("stopped")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    plan = plan_from_env(dict(os.environ))
    state = read_state(plan.state_dir)
    if state is None or not pid_alive(state.get("supervisor_pid")):
        print(json.dumps({"running": False, "state_dir": str(plan.state_dir)}))
        return 1
    print(json.dumps(dict(state, running=True), indent=2))
    return 0


def cmd_render_nginx(args: argparse.Namespace) -> int:
    upstreams = " ".join([*(f"--wsgi {a}" for a in args.wsgi), *(f"--asgi {a}" for a in args.asgi)])
    sys.stdout.write(
        f"# Generated by: deploy/serve.py render-nginx {upstreams} --listen {args.listen} "
        f"--access-log {args.access_log}\n# Edit deploy/nginx/scoreboard.conf.template, then regenerate.\n"
    )
    sys.stdout.write(render_site(listen=args.listen, wsgi=args.wsgi, asgi=args.asgi, access_log=args.access_log))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("start").set_defaults(func=cmd_start)
    sub.add_parser("stop").set_defaults(func=cmd_stop)
    sub.add_parser("status").set_defaults(func=cmd_status)
    render = sub.add_parser("render-nginx", help="print the http-level nginx config for given upstreams")
    render.add_argument("--wsgi", action="append", required=True, help="host:port of a WSGI server (repeatable)")
    render.add_argument("--asgi", action="append", required=True, help="host:port of an ASGI server (repeatable)")
    render.add_argument("--listen", default="80")
    render.add_argument("--access-log", default="/dev/stdout")
    render.set_defaults(func=cmd_render_nginx)
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
