# ruff: noqa: S603, S607  -- a build script: it runs podman, debootstrap, tar and createdb with arguments it builds itself
"""Build the container image for real with podman and run it against the local PostgreSQL and Redis.

    make image-test        (DATABASE_URL / REDIS_URL name the services; a scratch database is used)

1. A base image from Debian's packages when none is there yet (``debootstrap --variant=minbase``
   with python3 and its venv module, then ``podman import``): no image registry is needed.
2. ``podman build`` of the Dockerfile with that ``BASE_IMAGE`` (``--format docker`` keeps the
   HEALTHCHECK). The build installs requirements.txt from PyPI inside the build (``--network host``).
3. Checks on the image: it runs as a non-root user, has no compiler or make, declares a health check.
4. ``migrate`` in the image on a scratch database, then the api role (gunicorn) on a free port:
   a player registers, a game server key mints an action token, the score is submitted and read
   back through the container's port (with the Python client kit), and podman's health check of
   the running container passes. Everything it started is removed at the end.

This machine's constraints, as flags: crun refuses the hybrid cgroup layout, so runc
(``--runtime``); raising resource limits is not permitted, so ``--ulimit nofile=1024:1024
--ulimit nproc=1024:1024``; no bridge networking, so ``--network host``.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BASE_IMAGE = os.environ.get("IMAGE_BASE", "localhost/scoreboard-base:bookworm")
IMAGE = os.environ.get("IMAGE_TAG", "localhost/scoreboard:test")
SUITE = "bookworm"
BASE_PACKAGES = "python3,python3-venv,ca-certificates"
RUNTIME = os.environ.get("PODMAN_RUNTIME", "/usr/sbin/runc")
LIMITS = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"]
CONTAINER = "scoreboard-image-test"
READY_TIMEOUT_SECONDS = 90
NON_ROOT_UID = "10001"
BUILD_CA_PATH = "/run/build-ca.crt"

timings: dict[str, float] = {}


def log(message: str) -> None:
    print(f"[image-test {time.strftime('%H:%M:%S')}] {message}", flush=True)


@contextlib.contextmanager
def step(name: str) -> Iterator[None]:
    log(f"{name}...")
    started = time.monotonic()
    yield
    timings[name] = time.monotonic() - started
    log(f"{name}: {timings[name]:.1f}s")


def podman(*args: str, check: bool = True, capture: bool = False, stdin: bytes | None = None) -> str:
    command = ["podman", "--runtime", RUNTIME, *args]
    result = subprocess.run(command, input=stdin, capture_output=capture, check=False)
    if check and result.returncode != 0:
        detail = (result.stderr or b"").decode()[-3000:] if capture else ""
        raise SystemExit(f"FAIL: {' '.join(command[:6])}... exited {result.returncode}\n{detail}")
    return (result.stdout or b"").decode().strip() if capture else ""


def image_exists(name: str) -> bool:
    return subprocess.run(["podman", "image", "exists", name], check=False).returncode == 0


def build_base() -> None:
    if image_exists(BASE_IMAGE):
        log(f"base {BASE_IMAGE} already there (podman rmi it to rebuild)")
        return
    with step("base image (debootstrap + podman import)"), tempfile.TemporaryDirectory(prefix="sb-rootfs-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        # No mirror argument: debootstrap's default Debian mirror.
        subprocess.run(
            ["debootstrap", "--variant=minbase", f"--include={BASE_PACKAGES}", SUITE, str(rootfs)], check=True
        )
        for cache in ("var/cache/apt/archives", "var/lib/apt/lists"):
            shutil.rmtree(rootfs / cache, ignore_errors=True)
        tar = subprocess.run(["tar", "-C", str(rootfs), "--numeric-owner", "-c", "."], capture_output=True, check=True)
        podman("import", "--change", 'CMD ["/bin/bash"]', "-", BASE_IMAGE, stdin=tar.stdout, capture=True)


def _host_ca_flags() -> list[str]:
    """The host's CA bundle for pip inside the build, when the host names one (a TLS-inspecting
    egress proxy): mounted for the build only, never copied into the image."""
    bundle = os.environ.get("PIP_CERT") or os.environ.get("SSL_CERT_FILE")
    if not bundle or not Path(bundle).is_file():
        return []
    return ["--volume", f"{bundle}:{BUILD_CA_PATH}:ro", "--build-arg", f"PIP_CERT={BUILD_CA_PATH}"]


def build_image() -> None:
    with step("podman build"):
        podman(
            "build",
            *_host_ca_flags(),
            "--format",
            "docker",
            "--network",
            "host",
            *LIMITS,
            "--build-arg",
            f"BASE_IMAGE={BASE_IMAGE}",
            "-t",
            IMAGE,
            str(ROOT),
        )


def run_in_image(*command: str, env: dict[str, str] | None = None) -> str:
    flags = [item for key, value in (env or {}).items() for item in ("-e", f"{key}={value}")]
    return podman(
        "run", "--rm", "--no-healthcheck", "--network", "host", *LIMITS, *flags, IMAGE, *command, capture=True
    )


def check_image() -> None:
    with step("image checks"):
        uid = run_in_image("id", "-u")
        assert uid == NON_ROOT_UID, f"the image runs as uid {uid}, not {NON_ROOT_UID}"
        tools = run_in_image("sh", "-c", "for t in gcc cc c++ make; do command -v $t || true; done")
        assert tools == "", f"build tools in the image: {tools}"
        health = podman("image", "inspect", "--format", "{{json .HealthCheck}}", IMAGE, capture=True)
        assert "healthz" in health, f"no health check in the image: {health}"
        size = podman("image", "inspect", "--format", "{{.Size}}", IMAGE, capture=True)
        log(f"image {IMAGE}: {int(size) / 1e6:.0f} MB, uid {uid}, no compiler, health check declared")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def scratch_database(database_url: str) -> Iterator[str]:
    parts = urllib.parse.urlsplit(database_url)
    name = f"sb_image_test_{os.getpid()}"
    admin = ["-h", parts.hostname or "127.0.0.1", "-p", str(parts.port or 5432), "-U", parts.username or "postgres"]
    subprocess.run(["createdb", *admin, name], check=True)
    try:
        yield urllib.parse.urlunsplit(parts._replace(path=f"/{name}"))
    finally:
        subprocess.run(["dropdb", "--if-exists", "--force", *admin, name], check=False)


def wait_ready(base_url: str) -> None:
    import urllib.request

    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), urllib.request.urlopen(f"{base_url}/readyz", timeout=3) as response:  # noqa: S310
            if response.status == 200:  # (loopback only)
                return
        time.sleep(0.5)
    logs = podman("logs", "--tail", "40", CONTAINER, check=False, capture=True)
    raise SystemExit(f"FAIL: the container did not become ready in {READY_TIMEOUT_SECONDS}s\n{logs}")


def exercise(database_url: str, redis_url: str) -> None:
    sys.path.insert(0, str(ROOT / "clients" / "python" / "src"))
    from scoreboard_client import Scoreboard, mint_action_token

    port = free_port()
    action_secret = secrets.token_urlsafe(48)
    env = {
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(48),
        "JWT_SECRET": secrets.token_urlsafe(48),
        "ACTION_TOKEN_SECRET": action_secret,
        "PORT": str(port),
        "WEB_CONCURRENCY": "2",
        "LOG_LEVEL": "WARNING",
    }
    flags = [item for key, value in env.items() for item in ("-e", f"{key}={value}")]
    one_off = ["run", "--rm", "--no-healthcheck", "--network", "host", *LIMITS, *flags, IMAGE, "python", "manage.py"]
    with step("migrate and index rebuild in the image"):
        podman(*one_off, "migrate", "-v0")
        # The Redis db may hold another database's index (Redis is derived): rebuild it from this one.
        podman(*one_off, "rebuild_leaderboard", capture=True)
    podman("rm", "-f", CONTAINER, check=False, capture=True)
    try:
        with step("container start until /readyz"):
            podman(
                "run",
                "-d",
                "--name",
                CONTAINER,
                "--network",
                "host",
                *LIMITS,
                *flags,
                IMAGE,
                "gunicorn",
                "-c",
                "deploy/gunicorn.conf.py",
                "--bind",
                f"127.0.0.1:{port}",
                "scoreboard.wsgi:application",
                capture=True,
            )
            base = f"http://127.0.0.1:{port}"
            wait_ready(base)
        with step("score through the container's port"):
            api_key = podman(
                "exec", CONTAINER, "python", "manage.py", "create_game_server_key", "image-test", capture=True
            ).splitlines()[-1]
            sb = Scoreboard(base, api_key=api_key)
            version = sb.health()["version"]
            user_id = sb.register(username="image_alice", email="image@example.com", password="correct-horse-battery")
            access = sb.login(username="image_alice", password="correct-horse-battery").access
            minted = sb.create_action(user_id=user_id, action_type="LEVEL_COMPLETION", score_increment=420)
            assert sb.submit_score(minted.action_token, access_token=access).new_score == 420
            offline = mint_action_token(
                action_secret, user_id=user_id, action_type="ACHIEVEMENT_UNLOCK", score_increment=80
            )
            assert sb.submit_score(offline, access_token=access).new_score == 500
            board = sb.leaderboard(limit=5)
            assert [(e.username, e.score) for e in board.entries] == [("image_alice", 500)], board
            log(f"service {version} in the container: scores 420 + 80 submitted and read back on :{port}")
        with step("podman healthcheck"):
            deadline = time.monotonic() + READY_TIMEOUT_SECONDS
            while podman("healthcheck", "run", CONTAINER, check=False, capture=True) not in ("", "healthy"):
                if time.monotonic() > deadline:
                    raise SystemExit("FAIL: the container's health check does not pass")
                time.sleep(1)
            status = podman("inspect", "--format", "{{.State.Health.Status}}", CONTAINER, capture=True)
            assert status == "healthy", status
    finally:
        podman("rm", "-f", CONTAINER, check=False, capture=True)


def main() -> None:
    for tool in ("podman", "debootstrap", "createdb"):
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
            raise SystemExit(f"FAIL: {tool} is missing (make image-test installs podman, runc and debootstrap)")
    database_url = os.environ.get("DATABASE_URL", "")
    redis_url = os.environ.get("REDIS_URL", "")
    if not database_url.startswith("postgres") or not redis_url.startswith("redis"):
        raise SystemExit("make image-test needs DATABASE_URL (PostgreSQL) and REDIS_URL (Redis)")
    started = time.monotonic()
    build_base()
    build_image()
    check_image()
    with scratch_database(database_url) as scratch:
        exercise(scratch, redis_url)
    total = time.monotonic() - started
    figures = ", ".join(f"{name} {seconds:.0f}s" for name, seconds in timings.items())
    log(f"PASS in {total:.0f}s ({figures})")


if __name__ == "__main__":
    main()
