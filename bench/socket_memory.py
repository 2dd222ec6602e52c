"""Server memory per idle WebSocket, and where it goes: one uvicorn process, N idle sockets.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/sb_realtime_bench REDIS_URL=redis://127.0.0.1:6379/3 \\
        .venv/bin/python -m bench.socket_memory --sockets 10000 --port 9310 [--trace 12]

Starts one uvicorn process with the production flags (deploy/serve.py ``UVICORN_FLAGS``), warms it
with a few hundred sockets (imports, the hub's Redis subscription, the board cache), then opens
``--sockets`` sockets that each wait for their connect snapshot (``bench.wsclients``) and measures
the server's RSS growth per socket (VmRSS, as ``bench/delivery_ab.py`` does). ``--trace N`` runs
the server under ``tracemalloc`` and prints the N source lines that allocated most per socket
(Python heap only; slower, so its RSS figure is not the headline one).

``--compare`` runs the server twice per round, as is and then with ``--env`` settings applied
(``KEY=VALUE``, repeatable; ``TREE=PATH`` serves another checkout, e.g. a worktree of main, with
that checkout's flags), alternating: the figure before and after a change, in one run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from bench.topology import raise_nofile, rss_kb

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
WARM_SOCKETS = 300
SETTLE_SECONDS = 1.5

# Runs inside the server process when --trace is given: SIGUSR1 writes a tracemalloc snapshot.
TRACED_SERVER = """
import os, signal, sys, tracemalloc
tracemalloc.start(int(os.environ.get("SB_TRACE_FRAMES", "1")))
count = [0]
def dump(signum, frame):
    count[0] += 1
    out = os.environ["SB_TRACE_OUT"] + f".{count[0]}"
    if os.environ.get("SB_TRACE_COLLECT") == "1":
        import gc
        gc.collect()  # garbage in reference cycles is not what the sockets hold
    tracemalloc.take_snapshot().dump(out + ".tmp")
    os.replace(out + ".tmp", out)
signal.signal(signal.SIGUSR1, dump)
import uvicorn.main
sys.argv = ["uvicorn", *sys.argv[1:]]
uvicorn.main.main()
"""


def server_flags(tree: Path) -> list[str]:
    """The production flags of ``tree``'s deploy/serve.py (``UVICORN_FLAGS``), not a copy."""
    code = "import json, sys; sys.path.insert(0, sys.argv[1]); import serve; print(json.dumps(serve.UVICORN_FLAGS))"
    out = subprocess.run(  # noqa: S603 - our own interpreter and code
        [sys.executable, "-c", code, str(tree / "deploy")], check=True, capture_output=True, text=True
    )
    return [*json.loads(out.stdout), "--log-level", "warning"]


def wait_http(url: str, timeout: float = 240.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2):  # noqa: S310 - loopback URL
            return
        time.sleep(0.2)
    raise SystemExit(f"{url} did not answer")


def open_sockets(port: int, count: int, work: Path, tag: str) -> tuple[list[subprocess.Popen[str]], int]:
    per_process = 5000
    procs, connected = [], 0
    for i in range(0, count, per_process):
        n = min(per_process, count - i)
        procs.append(
            subprocess.Popen(  # noqa: S603
                [
                    *(sys.executable, "-m", "bench.wsclients", "--port", str(port), "--count", str(n)),
                    *("--duration", "0", "--out", str(work / f"{tag}-{i}.json"), "--wait-first-frame"),
                ],
                cwd=ROOT,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                start_new_session=True,
            )
        )
    for proc in procs:
        line = (proc.stdout.readline() if proc.stdout else "").split()
        connected += int(line[1]) if len(line) > 1 else 0
    return procs, connected


def close_sockets(procs: list[subprocess.Popen[str]]) -> None:
    for proc in procs:
        with contextlib.suppress(OSError, ValueError):
            if proc.stdin:
                proc.stdin.write("go\n")
                proc.stdin.flush()
    for proc in procs:
        proc.wait(timeout=60)


def measure(args: argparse.Namespace, extra_env: dict[str, str], work: Path, tag: str) -> dict[str, object]:
    extra_env = dict(extra_env)
    env = dict(os.environ, DJANGO_SETTINGS_MODULE="scoreboard.settings", **extra_env)
    env.setdefault("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost")
    env.setdefault("RATE_LIMIT_WS_HANDSHAKES_PER_MINUTE", "10000000")
    env.setdefault("RATE_LIMIT_IP_PER_MINUTE", "10000000")
    env.setdefault("REALTIME_WS_PER_ADDRESS", "0")
    trace_out = work / f"{tag}.trace"
    tree = Path(extra_env.pop("TREE", str(ROOT)))
    env.pop("TREE", None)
    argv = ["scoreboard.asgi:application", "--host", "127.0.0.1", "--port", str(args.port), *server_flags(tree)]
    if args.trace:
        env.update(SB_TRACE_OUT=str(trace_out), SB_TRACE_FRAMES=str(args.trace_frames))
        env["SB_TRACE_COLLECT"] = "1" if args.collect else "0"
        cmd = [sys.executable, "-c", TRACED_SERVER, *argv]
    else:
        cmd = [str(VENV_BIN / "uvicorn"), *argv]
    server = subprocess.Popen(cmd, cwd=tree, env=env, start_new_session=True)  # noqa: S603
    try:
        wait_http(f"http://127.0.0.1:{args.port}/healthz")
        warm, _ = open_sockets(args.port, WARM_SOCKETS, work, f"{tag}-warm")
        close_sockets(warm)
        time.sleep(SETTLE_SECONDS)
        if args.trace:
            os.kill(server.pid, signal.SIGUSR1)
            while not Path(f"{trace_out}.1").exists():
                time.sleep(0.2)
        before = rss_kb([server.pid])
        procs, connected = open_sockets(args.port, args.sockets, work, tag)
        time.sleep(SETTLE_SECONDS)
        after = rss_kb([server.pid])
        if args.trace:
            os.kill(server.pid, signal.SIGUSR1)
            deadline = time.monotonic() + 300
            while not Path(f"{trace_out}.2").exists() and time.monotonic() < deadline:
                time.sleep(0.5)
        close_sockets(procs)
        result: dict[str, object] = {
            "variant": tag,
            "env": extra_env,
            "connected": connected,
            "rss_kb_before": before,
            "rss_kb_after": after,
            "kb_per_socket": round((after - before) / connected, 2) if connected else None,
        }
        if args.trace:
            result["top"] = top_allocations(trace_out, connected, args.trace)
        return result
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def top_allocations(trace_out: Path, sockets: int, limit: int) -> list[str]:
    import tracemalloc

    first = tracemalloc.Snapshot.load(str(trace_out) + ".1")
    second = tracemalloc.Snapshot.load(str(trace_out) + ".2")
    stats = second.compare_to(first, "traceback")
    total = sum(s.size_diff for s in stats)
    lines = [f"python heap growth {total / sockets:.0f} B/socket (tracemalloc)"]
    for stat in stats[:limit]:
        # Most recent call first: the allocating line, then its callers.
        frames = " <- ".join(f"{Path(f.filename).name}:{f.lineno}" for f in reversed(stat.traceback))
        lines.append(f"{stat.size_diff / sockets:8.0f} B/socket {stat.count_diff / sockets:6.2f} blocks  {frames}")
    # By owner: the innermost frame in this project's code, else the package that allocated.
    owners: dict[str, int] = {}
    for stat in stats:
        owners[owner(stat.traceback)] = owners.get(owner(stat.traceback), 0) + stat.size_diff
    lines.append("by owner (innermost project frame, else the allocating package):")
    for name, size in sorted(owners.items(), key=lambda kv: -kv[1])[:limit]:
        lines.append(f"{size / sockets:8.0f} B/socket  {name}")
    return lines


def owner(traceback: object) -> str:
    frames = list(reversed(list(traceback)))  # type: ignore[call-overload]
    for frame in frames:
        path = Path(frame.filename)
        if str(ROOT) in str(path) and ".venv" not in path.parts:
            return f"{path.relative_to(ROOT)}:{frame.lineno}"
    path = Path(frames[0].filename)
    if "site-packages" in path.parts:
        return path.parts[path.parts.index("site-packages") + 1]
    return path.name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sockets", type=int, default=10000)
    parser.add_argument("--port", type=int, default=9310)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--trace", type=int, default=0, help="print the N biggest allocation sites (tracemalloc)")
    parser.add_argument("--trace-frames", type=int, default=1)
    parser.add_argument("--collect", action="store_true", help="gc.collect() before each tracemalloc snapshot")
    parser.add_argument("--compare", action="store_true", help="also measure with --env applied, alternating")
    parser.add_argument("--env", action="append", default=[], help="KEY=VALUE for the compared variant")
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    raise_nofile()
    variants: list[tuple[str, dict[str, str]]] = [("as-is", {})]
    if args.compare:
        extra = dict(e.split("=", 1) for e in args.env)
        variants.append((f"tree-{Path(extra['TREE']).name}" if "TREE" in extra else "with-env", extra))
    results = []
    with tempfile.TemporaryDirectory(prefix="sb-mem-") as tmp:
        for rnd in range(args.rounds):
            for tag, extra in variants if rnd % 2 == 0 else list(reversed(variants)):
                result = measure(args, extra, Path(tmp), f"{tag}-r{rnd}")
                results.append(result)
                print(
                    f"{result['variant']}: {result['connected']} sockets, RSS {result['rss_kb_before']} -> "
                    f"{result['rss_kb_after']} KB: {result['kb_per_socket']} KB/socket",
                    flush=True,
                )
                for line in result.get("top", []):  # type: ignore[attr-defined]
                    print("   ", line, flush=True)
    print(f"load average {os.getloadavg()}")
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
