"""A real 3-node Redis Cluster for the tests: redis-server processes in a temporary directory.

Started once per session by the ``redis_cluster`` fixture (tests/conftest.py) on free ports of
``CLUSTER_PORTS`` (``REDIS_CLUSTER_TEST_PORTS=first-last`` to move them), joined with
``redis-cli --cluster create`` (three primaries, no replicas) and stopped at the end. When it
cannot start, the tests that need it fail (never skip): CI must not go green without it.
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
from dataclasses import dataclass, field
from pathlib import Path

import redis

NODES = 3
START_SECONDS = 15.0


def _port_range() -> range:
    first, _, last = os.environ.get("REDIS_CLUSTER_TEST_PORTS", "9230-9259").partition("-")
    return range(int(first), int(last) + 1)


def _free(port: int) -> bool:
    # Both the node's port and its cluster bus (port + 10000) must be free.
    for p in (port, port + 10000):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", p))
            except OSError:
                return False
    return True


class ClusterStartError(RuntimeError):
    pass


@dataclass
class LocalCluster:
    ports: list[int]
    directory: Path
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def url(self) -> str:
        """The data-plane URL settings build from ``REDIS_CLUSTER_URL`` (scoreboard.redis.cluster_url)."""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in self.ports)

    def node(self, port: int) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=port, socket_timeout=2)

    def flush(self) -> None:
        for port in self.ports:
            with contextlib.closing(self.node(port)) as client:
                client.flushall()

    def owner_of(self, key: str) -> int:
        """The port of the primary that owns ``key``'s slot."""
        with contextlib.closing(self.node(self.ports[0])) as client:
            slot = int(client.execute_command("CLUSTER KEYSLOT", key))
            for start, end, primary, *_ in client.execute_command("CLUSTER SLOTS"):
                if int(start) <= slot <= int(end):
                    return int(primary[1])
        raise AssertionError(f"no node owns the slot of {key!r}")

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        shutil.rmtree(self.directory, ignore_errors=True)


def _wait_ping(port: int, deadline: float) -> None:
    while True:
        try:
            with contextlib.closing(redis.Redis(host="127.0.0.1", port=port, socket_timeout=0.5)) as client:
                client.ping()
                return
        except redis.RedisError:
            if time.monotonic() > deadline:
                raise ClusterStartError(f"redis-server on port {port} did not answer") from None
            time.sleep(0.05)


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _wait_ok(cluster: LocalCluster, deadline: float) -> None:
    while True:
        states = []
        for port in cluster.ports:
            with contextlib.closing(cluster.node(port)) as client:
                info = client.execute_command("CLUSTER INFO")  # redis-py parses it into a dict
                fields = {_text(k): _text(v) for k, v in info.items()}
                states.append(
                    fields.get("cluster_state") == "ok"
                    and fields.get("cluster_slots_ok") == "16384"
                    and fields.get("cluster_known_nodes") == str(NODES)
                )
        if all(states):
            return
        if time.monotonic() > deadline:
            raise ClusterStartError(f"the cluster did not reach state ok: {states}")
        time.sleep(0.1)


@contextlib.contextmanager
def local_cluster() -> Iterator[LocalCluster]:
    server, cli = shutil.which("redis-server"), shutil.which("redis-cli")
    if server is None or cli is None:
        raise ClusterStartError("redis-server and redis-cli (Redis 7) must be on PATH")
    ports = [p for p in _port_range() if _free(p)][:NODES]
    if len(ports) < NODES:
        raise ClusterStartError(f"fewer than {NODES} free ports in {_port_range()}")
    cluster = LocalCluster(ports=ports, directory=Path(tempfile.mkdtemp(prefix="sb-redis-cluster-")))
    try:
        deadline = time.monotonic() + START_SECONDS
        for port in ports:
            log = open(cluster.directory / f"{port}.log", "wb")  # noqa: SIM115 - the process owns it
            cluster.processes.append(
                subprocess.Popen(
                    [
                        server,
                        "--port",
                        str(port),
                        "--bind",
                        "127.0.0.1",
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        str(cluster.directory / f"nodes-{port}.conf"),
                        "--cluster-node-timeout",
                        "2000",
                        "--dir",
                        str(cluster.directory),
                        "--save",
                        "",
                        "--appendonly",
                        "no",
                        "--protected-mode",
                        "no",
                    ],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
            log.close()
        for port in ports:
            _wait_ping(port, deadline)
        create = [cli, "--cluster", "create", *(f"127.0.0.1:{p}" for p in ports)]
        created = subprocess.run(
            [*create, "--cluster-replicas", "0", "--cluster-yes"],
            capture_output=True,
            text=True,
            timeout=START_SECONDS,
        )
        if created.returncode != 0:
            raise ClusterStartError(f"redis-cli --cluster create failed: {created.stdout[-2000:]}{created.stderr}")
        _wait_ok(cluster, deadline)
        yield cluster
    finally:
        cluster.stop()


def main() -> None:
    """``python -m tests.redis_cluster``: start a cluster, print REDIS_CLUSTER_URL, stop on Enter/EOF.

    For measuring by hand (docs/runbook.md, "Scale out"): the same cluster the tests use.
    """
    import sys

    with local_cluster() as cluster:
        print("REDIS_CLUSTER_URL=redis://" + ",".join(f"127.0.0.1:{p}" for p in cluster.ports), flush=True)
        sys.stdin.read()


if __name__ == "__main__":
    main()
