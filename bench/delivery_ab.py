"""A/B of the delivery stage: one topology, several ways in, alternating, beside the bare server.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/scoreboard_bench REDIS_URL=redis://127.0.0.1:6379/14 \\
        .venv/bin/python -m bench.delivery_ab --clients 2000 10000 --rounds 3 --variants nginx direct

The box's speed drifts a lot between runs, so variants are only compared within one run: the
bench's own topology is started once (the same seeding, warm-up and background updates as
``bench.run``'s delivery stage), then every round measures each variant at each client count, in
alternating order (A B, then B A, ...), and the bare ``websockets`` broadcast server at the same
counts. Each figure is printed with its ratio to the bare server of the same round.

Variants:

- ``nginx``: through the topology's nginx (the bench's headline path).
- ``direct`` / ``directN`` / ``directA-B``: straight to the uvicorn processes
  (all, the first N, or A to B-1), no nginx.
- ``reuseportN``: straight to the BENCH_ASGI_REUSEPORT group of N uvicorn processes that share one
  SO_REUSEPORT port (deploy/reuseport.py): the kernel balances, no proxy reads or writes a frame.
- ``alt:NAME``: through a second nginx started from ``--alt NAME=PATH[@N or @A-B]``: PATH is a
  complete nginx.conf with ``{run}``, ``{port}`` and ``{asgi_servers}`` placeholders (the uvicorn
  processes picked as above), listening on ports 8510-8513.

``BENCH_ASGI_PROCESSES`` sets how many uvicorn processes start (processes no variant uses only hear
the Redis publishes, to no socket), ``BENCH_ASGI_APPS`` which app each one serves and
``BENCH_ASGI_LISTEN`` (tcp or unix, per process) where it listens.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.run import MODES, RESULTS, Bench, ensure_database, log
from bench.topology import NGINX_PORT, PORT_BASE, WS_BASELINE_PORT, Topology, raise_nofile

ALT_PORTS = tuple(PORT_BASE + n for n in (10, 11, 12, 13))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, nargs="+", default=[2000, 10000])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--variants", nargs="+", default=["nginx", "direct"])
    parser.add_argument("--alt", action="append", default=[], help="NAME=PATH[@N]: a second nginx config")
    parser.add_argument("--no-bare", action="store_true", help="skip the bare websockets server")
    parser.add_argument("--bg-rate", type=int, default=50, help="background updates/s (bench.run: half the sustained)")
    parser.add_argument("--players", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--out", default="", help="JSON file for every step (default bench/results/ab-<time>.json)")
    args = parser.parse_args()

    import dataclasses
    import os

    mode = dataclasses.replace(MODES["full"], ws_seconds=args.seconds)
    work = Path(tempfile.mkdtemp(prefix="sb-ab-"))
    bench = Bench(mode, args.players, work)
    results: list[dict[str, Any]] = []
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    out = Path(args.out) if args.out else RESULTS / f"ab-{stamp}.json"
    alts: dict[str, tuple[int, Path | None]] = {}

    def on_signal(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    try:
        ensure_database(os.environ["DATABASE_URL"])
        raise_nofile()
        env = bench.environment()
        os.environ.update(env)
        bench.prepare_data()
        topo = bench.topology = Topology(run_dir=work / "run", env=env)
        topo.start_app()
        bench.warm_up()
        # The delivery stage's background rate: half of what the ladder sustained (here: given).
        bench.result["sustained"] = {"achieved_per_s": args.bg_rate * 2}
        socks = topo.asgi_addresses()
        asgi_pids = topo.asgi_pids()
        for n, spec in enumerate(args.alt):
            name, _, rest = spec.partition("=")
            path, _, count = rest.partition("@")
            used = pick(socks, count)
            port = ALT_PORTS[n]
            run = topo.run_dir / f"alt-{name}"
            for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
                (run / sub).mkdir(parents=True, exist_ok=True)
            servers = " ".join(f"server {s};" for s in used)
            conf = Path(path).read_text().replace("{run}", str(run)).replace("{port}", str(port))
            (run / "nginx.conf").write_text(conf.replace("{asgi_servers}", servers))
            nginx = shutil.which("nginx") or "/usr/sbin/nginx"
            topo._spawn(f"nginx-{name}", [nginx, "-c", str(run / "nginx.conf"), "-p", str(run), "-g", "daemon off;"])
            alts[name] = (port, None)
        time.sleep(1.0)
        topo.check_alive()
        bench.ws_step(NGINX_PORT, 200, "warm", asgi_pids, False)
        groups = topo.reuseport_ports()
        for count, port in groups.items():
            bench.ws_step(port, 200, f"warm-reuseport{count}", topo.reuseport_pids(count), False)
        for name in alts:
            bench.ws_step(alts[name][0], 200, f"warm-{name}", asgi_pids, False)
        for rnd in range(args.rounds):
            order = args.variants if rnd % 2 == 0 else list(reversed(args.variants))
            for k in args.clients:
                for variant in order:
                    connect = None
                    port = NGINX_PORT
                    pids = asgi_pids
                    if variant.startswith("direct"):
                        connect = pick(socks, variant[6:])
                    elif variant.startswith("reuseport"):
                        count = int(variant[9:])
                        port, pids = groups[count], topo.reuseport_pids(count)
                    elif variant.startswith("alt:"):
                        port = alts[variant[4:]][0]
                    bench.reset_contenders()
                    step = bench.ws_step(port, k, f"{variant}-r{rnd}", pids, True, connect=connect)
                    results.append({"round": rnd, "variant": variant, **step})
                if not args.no_bare:
                    proc = topo.start_ws_baseline(10.0, 1024)
                    time.sleep(0.5)
                    step = bench.ws_step(WS_BASELINE_PORT, k, f"bare-r{rnd}", [proc.pid], False, start_signal=proc.pid)
                    topo.stop("ws_baseline")
                    results.append({"round": rnd, "variant": "bare", **step})
                out.write_text(json.dumps(results, indent=1))
    finally:
        if bench.topology is not None:
            bench.topology.stop_all()
        shutil.rmtree(work, ignore_errors=True)
        out.write_text(json.dumps(results, indent=1))
    print_table(results)
    log(f"steps: {out}")


def pick(socks: list[str], spec: str) -> list[str]:
    """``""`` = all, ``"N"`` = the first N, ``"A-B"`` = processes A to B-1."""
    if not spec:
        return socks
    start, _, stop = spec.partition("-")
    return socks[int(start) : int(stop)] if stop else socks[: int(start)]


def print_table(results: list[dict[str, Any]]) -> None:
    bare = {(r["round"], r["clients"]): r for r in results if r["variant"] == "bare"}
    print(
        "| round | clients | variant | from | alive | behind final | frames/client/s | p50 | p95 | p99"
        " | fan-out p95 | client lag p95 | KB/socket (server RSS) | p95 / bare p95 (same round) |"
    )
    print("|---" * 14 + "|")
    for r in sorted(results, key=lambda r: (r["clients"], r["round"], r["variant"])):
        b = bare.get((r["round"], r["clients"]))
        ratio = f"{r['p95'] / b['p95']:.2f}x" if b and r["p95"] and b["p95"] else "—"
        print(
            f"| {r['round']} | {r['clients']} | {r['variant']} | {r.get('measured_from')} | {r['alive_at_end']}"
            f" | {r.get('sockets_behind_final')} | {r['frames_per_client_per_s']} | {r['p50']} | {r['p95']}"
            f" | {r['p99']} | {(r.get('fanout') or {}).get('p95')} | {(r.get('client_lag') or {}).get('p95')}"
            f" | {r.get('kb_per_connection')} | {ratio} |"
        )


if __name__ == "__main__":
    main()
