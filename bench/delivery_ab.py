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
  ``reuseportN@NAME=VALUE`` is the group started with that setting (``BENCH_ASGI_REUSEPORT=4,4@X=0``;
  ``@nice=10``: below the score updates, ``nice -n 10`` and their sessions' autogroup nice;
  ``@sessions=1``: all N in one session, one scheduling group), beside the plain one.
- ``bare``: the bare server (otherwise measured after every client count's variants).
- any variant with ``+niceN``: its client processes run at ``nice N`` (BENCH_CLIENT_NICE) for that step;
  ``+readN``: they read N bytes a ``recvmsg`` (BENCH_WS_READ_SIZE, bench/wsclients.py); ``+pyclient``: they
  read with the Python engine instead of the C one (BENCH_WS_CLIENT=python); ``+stormN``: N more
  sockets (not measured) connect to the same servers at the start of the window, a reconnect storm.
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
from bench.wsclients import prepare as prepare_ws_clients

ALT_PORTS = tuple(PORT_BASE + n for n in (10, 11, 12, 13))
# A variant's "+niceN" / "+readN": its client processes at nice N / reading N bytes a recvmsg.
CLIENT_KNOBS = {"nice": "BENCH_CLIENT_NICE", "read": "BENCH_WS_READ_SIZE"}
# "+pyclient" / "+cclient": the client processes' engine (bench/wsclients.py; native C by default).
CLIENT_ENGINES = {"pyclient": "python", "cclient": "native"}
CLIENT_ENV = (*CLIENT_KNOBS.values(), "BENCH_WS_CLIENT")


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
    os.environ["BENCH_ASGI_REUSEPORT"] = reuseport_groups(args.variants, os.environ.get("BENCH_ASGI_REUSEPORT", ""))
    try:
        ensure_database(os.environ["DATABASE_URL"])
        raise_nofile()
        env = bench.environment()
        os.environ.update(env)
        bench.prepare_data()
        prepare_ws_clients()
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
        for spec, port in groups.items():
            bench.ws_step(port, 200, f"warm-reuseport{spec}", topo.reuseport_pids(spec), False)
        for name in alts:
            bench.ws_step(alts[name][0], 200, f"warm-{name}", asgi_pids, False)
        explicit_bare = any(v.partition("+")[0] == "bare" for v in args.variants)
        for rnd in range(args.rounds):
            order = args.variants if rnd % 2 == 0 else list(reversed(args.variants))
            for k in args.clients:
                steps = order if explicit_bare or args.no_bare else [*order, "bare"]
                for name in steps:
                    variant, client_env, storm = parse_variant(name)
                    for knob in CLIENT_ENV:
                        os.environ.pop(knob, None)
                    os.environ.update(client_env)
                    if variant == "bare":
                        proc = topo.start_ws_baseline(10.0, 1024)
                        time.sleep(0.5)
                        tag = f"bare-r{rnd}"
                        step = bench.ws_step(WS_BASELINE_PORT, k, tag, [proc.pid], False, start_signal=proc.pid)
                        topo.stop("ws_baseline")
                        results.append({"round": rnd, "variant": name, **step})
                        continue
                    connect = None
                    port = NGINX_PORT
                    pids = asgi_pids
                    if variant.startswith("direct"):
                        connect = pick(socks, variant[6:])
                    elif variant.startswith("reuseport"):
                        spec = variant[9:]
                        port, pids = groups[spec], topo.reuseport_pids(spec)
                    elif variant.startswith("alt:"):
                        port = alts[variant[4:]][0]
                    bench.reset_contenders()
                    step = bench.ws_step(port, k, f"{variant}-r{rnd}", pids, True, connect=connect, storm=storm)
                    results.append({"round": rnd, "variant": name, **step})
                for knob in CLIENT_ENV:
                    os.environ.pop(knob, None)
                out.write_text(json.dumps(results, indent=1))
    finally:
        if bench.topology is not None:
            bench.topology.stop_all()
        shutil.rmtree(work, ignore_errors=True)
        out.write_text(json.dumps(results, indent=1))
    print_table(results)
    log(f"steps: {out}")


def reuseport_groups(variants: list[str], configured: str) -> str:
    """``BENCH_ASGI_REUSEPORT`` for these variants: the groups configured, plus every ``reuseportSPEC``
    variant's group that is not among them (a variant without its group had nothing to connect to)."""
    groups = [g for g in configured.split(",") if g]
    for name in variants:
        variant = parse_variant(name)[0]
        if variant.startswith("reuseport") and variant[9:] not in groups:
            groups.append(variant[9:])
    return ",".join(groups)


def parse_variant(name: str) -> tuple[str, dict[str, str], int]:
    """``reuseport4@X=0+nice19+read65536+storm8000`` -> (the server side, the clients' environment, storm sockets)."""
    variant, *options = name.split("+")
    env: dict[str, str] = {}
    storm = 0
    for option in options:
        if option.startswith("storm"):
            storm = int(option.removeprefix("storm"))
            continue
        if option in CLIENT_ENGINES:
            env["BENCH_WS_CLIENT"] = CLIENT_ENGINES[option]
            continue
        prefix = next((p for p in CLIENT_KNOBS if option.startswith(p)), None)
        if prefix is None:
            raise SystemExit(
                f"unknown variant option +{option} (known: storm, {', '.join([*CLIENT_KNOBS, *CLIENT_ENGINES])})"
            )
        env[CLIENT_KNOBS[prefix]] = str(int(option.removeprefix(prefix)))
    return variant, env, storm


def pick(socks: list[str], spec: str) -> list[str]:
    """``""`` = all, ``"N"`` = the first N, ``"A-B"`` = processes A to B-1."""
    if not spec:
        return socks
    start, _, stop = spec.partition("-")
    return socks[int(start) : int(stop)] if stop else socks[: int(start)]


def print_table(results: list[dict[str, Any]]) -> None:
    bare: dict[tuple[int, int, str | None], dict[str, Any]] = {}
    for r in results:
        if r["variant"].startswith("bare"):
            bare.setdefault((r["round"], r["clients"], _client_nice(r["variant"])), r)
            bare.setdefault((r["round"], r["clients"], None), r)
    print(
        "| round | clients | variant | from | alive | behind final | frames/client/s | p50 | p95 | p99"
        " | fan-out p95 | POST->publish p50/p95 | POST p95 (bg / top) | cores: servers / clients / box"
        " | GC in window (>= 1 ms) | KB/socket (server RSS) | p95 / bare p95 (same round, same client nice) |"
    )
    print("|---" * 17 + "|")
    for r in sorted(results, key=lambda r: (r["clients"], r["round"], r["variant"])):
        key = (r["round"], r["clients"])
        b = bare.get((*key, _client_nice(r["variant"]))) or bare.get((*key, None))
        ratio = f"{r['p95'] / b['p95']:.2f}x" if b and r["p95"] and b["p95"] else "—"
        posts = " / ".join(str(u.get("p95")) for u in r.get("updates_during") or []) or "—"
        cpu = r.get("window_cpu") or {}
        to_pub = r.get("post_to_publish") or {}
        cores = f"{cpu.get('servers_cores')} / {cpu.get('clients_cores')} / {cpu.get('box_cores')}"
        gens = (r.get("gc_window") or {}).get("by_generation") or {}
        gc_cell = ", ".join(f"{g} {int(v['count'])} max {v['max_ms']}" for g, v in gens.items()) or "none"
        print(
            f"| {r['round']} | {r['clients']} | {r['variant']} | {r.get('measured_from')} | {r['alive_at_end']}"
            f" | {r.get('sockets_behind_final')} | {r['frames_per_client_per_s']} | {r['p50']} | {r['p95']}"
            f" | {r['p99']} | {(r.get('fanout') or {}).get('p95')} | {to_pub.get('p50')}/{to_pub.get('p95')}"
            f" | {posts} | {cores} | {gc_cell}"
            f" | {r.get('kb_per_connection')} | {ratio} |"
        )


def _client_nice(variant: str) -> str:
    return variant.partition("+")[2]


if __name__ == "__main__":
    main()
