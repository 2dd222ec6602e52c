"""A real PostgreSQL streaming replica for the tests: a private primary and its standby.

The shared server's pg_hba.conf has no ``replication`` entry (``host all ... trust`` does not cover
replication connections) and changing it is not the suite's business, so the fixture runs a
primary of its own (initdb in a temporary directory, on a free port of ``PORTS``), takes a base
backup of it with ``pg_basebackup -R`` and starts that as a hot standby on the next port. Both run
as the ``postgres`` OS user (PostgreSQL refuses root) and are stopped and deleted at the end.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))
PORTS = range(9210, 9230)
START_SECONDS = 30


class ReplicaStartError(RuntimeError):
    pass


@dataclass(frozen=True)
class StreamingPair:
    primary_port: int
    replica_port: int

    def url(self, port: int, database: str) -> str:
        return f"postgres://postgres@127.0.0.1:{port}/{database}"


def _free_ports(count: int) -> list[int]:
    found = []
    for port in PORTS:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        found.append(port)
        if len(found) == count:
            return found
    raise ReplicaStartError(f"fewer than {count} free ports in {PORTS}")


def _as_postgres(args: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    return subprocess.run([*prefix, *args], capture_output=True, text=True, timeout=START_SECONDS, **kwargs)  # type: ignore[call-overload]


def _check(done: subprocess.CompletedProcess[str], what: str) -> None:
    if done.returncode != 0:
        raise ReplicaStartError(f"{what} failed: {done.stdout[-1500:]}{done.stderr[-1500:]}")


@contextlib.contextmanager
def streaming_pair() -> Iterator[StreamingPair]:
    if not (BIN / "initdb").exists() or (shutil.which("runuser") is None and os.geteuid() == 0):
        raise ReplicaStartError(f"PostgreSQL server binaries (initdb, pg_ctl) not found in {BIN}")
    primary_port, replica_port = _free_ports(2)
    root = Path(tempfile.mkdtemp(prefix="sb-pg-replica-"))
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
    primary, replica = root / "primary", root / "replica"
    started: list[Path] = []
    try:
        _check(
            _as_postgres([str(BIN / "initdb"), "-D", str(primary), "-A", "trust", "-U", "postgres", "--no-sync"]),
            "initdb",
        )
        with open(primary / "postgresql.conf", "a") as conf:
            conf.write(
                f"\nport = {primary_port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{root}'\n"
                "wal_level = replica\nmax_wal_senders = 4\nfsync = off\nshared_buffers = 16MB\n"
                "max_connections = 40\n"
            )
        _check(
            _as_postgres([str(BIN / "pg_ctl"), "-D", str(primary), "-l", str(root / "primary.log"), "-w", "start"]),
            "pg_ctl start (primary)",
        )
        started.append(primary)
        _check(
            _as_postgres(
                [
                    str(BIN / "pg_basebackup"),
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(primary_port),
                    "-U",
                    "postgres",
                    "-D",
                    str(replica),
                    "-R",
                    "-X",
                    "stream",
                    "--no-sync",
                ]
            ),
            "pg_basebackup",
        )
        with open(replica / "postgresql.conf", "a") as conf:
            conf.write(f"\nport = {replica_port}\nhot_standby = on\n")
        _check(
            _as_postgres([str(BIN / "pg_ctl"), "-D", str(replica), "-l", str(root / "replica.log"), "-w", "start"]),
            "pg_ctl start (replica)",
        )
        started.append(replica)
        deadline = time.monotonic() + START_SECONDS
        while True:  # the standby accepts connections once it is consistent
            ready = subprocess.run(
                [
                    "psql",
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(replica_port),
                    "-U",
                    "postgres",
                    "-Atc",
                    "select pg_is_in_recovery()",
                ],
                capture_output=True,
                text=True,
            )
            if ready.stdout.strip() == "t":
                break
            if time.monotonic() > deadline:
                raise ReplicaStartError(f"the standby did not come up: {ready.stderr}")
            time.sleep(0.2)
        yield StreamingPair(primary_port, replica_port)
    finally:
        for data in reversed(started):
            _as_postgres([str(BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"])
        shutil.rmtree(root, ignore_errors=True)
