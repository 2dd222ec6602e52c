"""CPU per frame of the delivery benchmark's client engines, against a bare broadcast server.

    .venv/bin/python -m bench.client_cost --sockets 5000 --processes 2 --engines native python

Starts ``bench.ws_baseline`` (1 KB frames, 10/s) on a free port, connects ``--sockets`` sockets in
``--processes`` client processes of each engine in turn (``bench.wsclients --engine``), and prints the
client processes' CPU (user and system, ``/proc/PID/stat``) per frame received over ``--seconds``.
No database or Redis: the figure is the harness's own cost, which it takes from the servers it
measures on a shared box.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.topology import port_open, wait_for

ROOT = Path(__file__).resolve().parents[1]


def cpu_seconds(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of one process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def measure(engine: str, sockets: int, processes: int, seconds: float, work: Path) -> dict[str, float]:
    port = free_port()
    server = subprocess.Popen(  # noqa: S603
        [sys.executable, "-m", "bench.ws_baseline", "--port", str(port), "--rate", "10"], cwd=ROOT
    )
    clients: list[subprocess.Popen[str]] = []
    try:
        wait_for(lambda: port_open(port), f"the bare server on :{port}", timeout=20)
        outs = [work / f"{engine}-{i}.json" for i in range(processes)]
        for i, out in enumerate(outs):
            count = sockets // processes + (1 if i < sockets % processes else 0)
            clients.append(
                subprocess.Popen(  # noqa: S603
                    [
                        *(sys.executable, "-m", "bench.wsclients", "--engine", engine, "--port", str(port)),
                        *("--count", str(count), "--duration", str(seconds), "--out", str(out)),
                    ],
                    cwd=ROOT,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                )
            )
        for proc in clients:
            assert proc.stdout is not None
            proc.stdout.readline()  # ready
        server.send_signal(signal.SIGUSR1)  # the bare server starts broadcasting
        time.sleep(0.5)
        for proc in clients:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        before = [cpu_seconds(proc.pid) for proc in clients]
        time.sleep(seconds)
        after = [cpu_seconds(proc.pid) for proc in clients]
        for proc in clients:
            assert proc.stdin is not None
            proc.stdin.write("end\n")
            proc.stdin.flush()
        for proc in clients:
            proc.wait(timeout=120)
    finally:
        for proc in clients:
            if proc.poll() is None:
                proc.kill()
        server.kill()
        server.wait()
    frames = sum(json.loads(out.read_text())["frames"] for out in outs)
    user = sum(a[0] - b[0] for a, b in zip(after, before, strict=True))
    system = sum(a[1] - b[1] for a, b in zip(after, before, strict=True))
    per = 1e6 / max(frames, 1)
    return {
        "frames": frames,
        "client_cores": round((user + system) / seconds, 3),
        "us_per_frame": round((user + system) * per, 2),
        "user_us_per_frame": round(user * per, 2),
        "system_us_per_frame": round(system * per, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sockets", type=int, default=2000)
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--engines", nargs="+", default=["native", "python"], choices=["native", "python"])
    args = parser.parse_args()
    from bench.wsclients import prepare

    prepare()
    with tempfile.TemporaryDirectory(prefix="sb-client-cost-") as work:
        for engine in args.engines:
            got = measure(engine, args.sockets, args.processes, args.seconds, Path(work))
            print(f"{engine}: {json.dumps(got)}", flush=True)


if __name__ == "__main__":
    main()
