"""`make bench` / `make bench-short`: seed, start the topology, measure, compare with baselines, report.

    python -m bench.run --mode short|full        (DATABASE_URL and REDIS_URL must be set)

Everything it starts is stopped in a ``finally`` (and on SIGTERM/SIGINT). Figures are written to
bench/results/<timestamp>.json, bench/results/latest.md and bench/results/latest.png.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import dataclasses
import datetime as dt
import gzip
import json
import math
import os
import random
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from bench import dbwrite, report
from bench.cpu import CpuMeter, box_busy_seconds, children_cpu_seconds, per_request_ms
from bench.topology import (
    NGINX_BASELINE_PORT,
    NGINX_PORT,
    ROOT,
    WS_BASELINE_PORT,
    Topology,
    cpu_seconds,
    gc_pauses,
    process_cpu_seconds,
    raise_nofile,
    rss_kb,
)
from bench.wsclients import client_engine
from bench.wsclients import prepare as prepare_ws_clients
from scoreboard.progress import progress, say

RESULTS = ROOT / "bench" / "results"
P95_LIMIT_MS = 100.0
ERROR_LIMIT = 0.01
REFINE_STEPS = 2  # extra rungs between the last passing and the first failing rate
ACTION_TYPE = "LEVEL_COMPLETION"
HOST_HEADER = f"127.0.0.1:{NGINX_PORT}"
# Increments stay below the fraud engine's "impossible jump" band (the top 10% of the allowed range).
MAX_INCREMENT = 800
# The beat schedule's heavy jobs (scoreboard/settings.py CELERY_BEAT_SCHEDULE), put off past a run.
MAINTENANCE_INTERVALS = (
    "FRAUD_SCAN_EVERY_SECONDS",
    "DRIFT_CHECK_EVERY_SECONDS",
    "NONCE_PURGE_EVERY_SECONDS",
    "JWT_PURGE_EVERY_SECONDS",
    "PERSONAL_DATA_RETENTION_EVERY_SECONDS",
)
CONTENDERS = 600  # players kept near the top; their updates are the changes of the top 10 (board frames)
CONTENDER_SPREAD = 300  # points: the cluster they start each delivery step in
WS_CLIENTS_PER_PROCESS = 2500
WS_WARM_CLIENTS = 200
WS_BASELINE_RATE = 10.0  # frames/s of the bare broadcast server
# Contender updates/s in a delivery step, each one a change of the top 10: the board changes as often
# as the bare server broadcasts, steadily (top_changes_file).
TOP_CHANGES_RATE = WS_BASELINE_RATE
TOP_CHANGE_MARGIN = 50  # at most this many points above the 10th place an entrant lands
WS_FRAME_BYTES = 1024
# Limits stay ON; they are raised only as far as one machine replaying thousands of players needs
# (every request comes from 127.0.0.1, so the per-IP limit would otherwise be the whole test).
BENCH_LIMITS = {
    "RATE_LIMIT_USER_PER_MINUTE": "30",
    "RATE_LIMIT_IP_PER_MINUTE": "10000000",
    "RATE_LIMIT_WS_HANDSHAKES_PER_MINUTE": "10000000",
    "REALTIME_WS_PER_ADDRESS": "0",  # every bench socket comes from 127.0.0.1
    "RATE_LIMIT_GLOBAL_PER_MINUTE": "1000000",
    "FRAUD_BLOCK_THRESHOLD": "0.95",
    "FRAUD_QUARANTINE_THRESHOLD": "0.95",  # bench players replay max increments: keep them on the board
}


@dataclass(frozen=True)
class Mode:
    name: str
    active_players: int
    update_steps: tuple[int, ...]
    step_seconds: float
    read_share: float  # GET /v1/leaderboard rate alongside updates, as a share of the update rate
    ws_steps: tuple[int, ...]
    ws_seconds: float
    ws_background_rate: int
    profile_seconds: float
    pgbench_seconds: int
    redis_requests: int
    saturation_seconds: float


# The app processes re-read the boards table at most every BOARDS_CACHE_SECONDS (5 s by default).
BOARD_CACHE_WAIT_SECONDS = 6.0

MODES = {
    "short": Mode(
        "short", 8_000, (50, 100, 200, 500, 1000, 1500), 4.0, 0.2, (500, 1000, 2000), 4.0, 200, 4.0, 5, 50_000, 3.0
    ),
    "full": Mode(
        "full",
        24_000,
        (50, 100, 150, 200, 250, 300, 350, 400, 500, 750, 1000, 1250, 1500, 2000, 2500, 3000),
        8.0,
        0.2,
        (1000, 2000, 5000, 10000),
        10.0,
        300,
        10.0,
        15,
        200_000,
        5.0,
    ),
}


def player_address(user_id: str) -> bytes:
    """A stable client address per player from 198.18.0.0/15 (RFC 2544's benchmarking range).

    Only written into X-Forwarded-For (nginx appends the real peer, which TRUSTED_PROXIES lists), so
    the fraud engine sees many players on many addresses instead of 100,000 players on 127.0.0.1.
    No packet is ever sent to these addresses.
    """
    n = int(user_id.replace("-", ""), 16) % (1 << 17)
    return f"198.{18 + (n >> 16)}.{(n >> 8) & 0xFF}.{n & 0xFF}".encode()


def refinement(steps: list[dict[str, Any]], passes: Callable[[dict[str, Any]], bool]) -> int | None:
    """The rate halfway (to 10/s) between the highest passing and the lowest failing step, if any."""
    passed = [s["rate"] for s in steps if passes(s)]
    failed = [s["rate"] for s in steps if not passes(s)]
    if not passed or not failed or max(passed) > min(failed):
        return None
    low, high = max(passed), min(failed)
    mid = round((low + high) / 2 / 10) * 10
    return None if mid in (low, high) else mid


def log(message: str) -> None:
    say(f"[bench {time.strftime('%H:%M:%S')}] {message}", stream=sys.stdout)  # above a progress bar, if one is drawn


def percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p95": None, "p99": None, "max": None}
    ordered = sorted(values)

    def pick(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)], 2)

    return {"p50": pick(0.50), "p95": pick(0.95), "p99": pick(0.99), "max": round(ordered[-1], 2)}


def update_timeline(access_log: Path, offset: int, since: float, until: float) -> list[dict[str, Any]] | None:
    """Per second of ``[since, until)``: the score updates nginx answered (its access log, read from
    ``offset``) and their time behind nginx (``upstream_response_time``: gunicorn's listen backlog
    included), so that a queue at the server is told from a late load generator."""
    if not access_log.exists():
        return None
    seconds: dict[int, list[float]] = collections.defaultdict(list)
    with access_log.open("rb") as log_file:
        log_file.seek(offset)
        for line in log_file:
            if b'"/v1/scores/update"' not in line:
                continue
            try:
                row = json.loads(line)
                at = dt.datetime.fromisoformat(row["ts"]).timestamp()
                upstream_ms = float(row["upstream_time"]) * 1000
            except (ValueError, KeyError, TypeError):
                continue  # not JSON, or "a, b" (nginx tried two upstreams)
            if since <= at < until:
                seconds[int(at - since)].append(upstream_ms)
    return [{"second": n, "answered": len(v), **percentiles(v)} for n, v in sorted(seconds.items())]


def ensure_database(url: str) -> None:
    """Create the benchmark database when it does not exist yet (a fresh clone, a fresh machine)."""
    import psycopg
    from psycopg import sql

    parsed = urlparse(url)
    name = parsed.path.lstrip("/")
    admin = parsed._replace(path="/postgres").geturl()
    with psycopg.connect(admin, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone() is None:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            log(f"created database {name}")


class Bench:
    def __init__(self, mode: Mode, players: int, work: Path, skip: frozenset[str] = frozenset()) -> None:
        self.mode = mode
        self.skip = skip
        self.players = players
        self.work = work
        self.topology: Topology | None = None
        self.result: dict[str, Any] = {"mode": mode.name, "players": players, "limits": BENCH_LIMITS}
        self.jwt: dict[str, str] = {}
        self.active: list[str] = []
        self.contender_scores: dict[str, int] = {}  # their global scores, as set_contenders left them
        self.cursor = 0

    # ----------------------------------------------------------------------------------- setup
    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(BENCH_LIMITS)
        env.update(
            {
                "DJANGO_DEBUG": "0",
                "DJANGO_SECRET_KEY": secrets.token_urlsafe(48),
                "JWT_SECRET": secrets.token_urlsafe(48),
                "ACTION_TOKEN_SECRET": secrets.token_urlsafe(48),
                "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
                "TRUSTED_PROXIES": "127.0.0.1,::1",  # nginx, as in deploy/serve.py
                "LOG_LEVEL": "WARNING",
                "DJANGO_SETTINGS_MODULE": "scoreboard.settings",
                # The periodic maintenance jobs stay out of the measurements: the fraud batch scan
                # took 22 s of CPU (30 s wall) over the bench's 24,000 active players and the drift
                # check 4.7 s (2026-12-07), 0.4-0.75 of a core for as long, which landed in random
                # delivery windows. Celery and beat still run (board periods are kept every 30 s).
                **dict.fromkeys(MAINTENANCE_INTERVALS, str(24 * 3600)),
            }
        )
        return env

    def prepare_data(self) -> None:
        import django

        django.setup()
        from django.core.management import call_command

        from bench.seed import seed_players

        call_command("migrate", "--noinput", verbosity=0)
        started = time.perf_counter()
        added = seed_players(players=self.players)
        log(f"seeded {added} new players ({self.players} wanted) in {time.perf_counter() - started:.1f}s")
        self.set_contenders()
        started = time.perf_counter()
        call_command("rebuild_leaderboard", verbosity=0)
        log(f"rebuild_leaderboard in {time.perf_counter() - started:.1f}s")
        self.issue_jwts()

    def set_contenders(self) -> None:
        """Put CONTENDERS players in a tight cluster above everyone: their updates reshuffle the top 10."""
        from django.db import connection, transaction

        from accounts.cards import cards_drop
        from bench.seed import USERNAME_PREFIX, username

        names = [username(i) for i in range(CONTENDERS)]
        with transaction.atomic(), connection.cursor() as cursor:
            # The live board is the global board's entries (board_entries), not users.current_score:
            # both are set, or the contenders never reach the top 10 and no step carries a frame.
            cursor.execute(
                "SELECT coalesce(max(be.score), 0) FROM board_entries be JOIN users u ON u.id = be.user_id"
                " WHERE be.board_id = 'global' AND be.period_key = 'all'"
                " AND u.username LIKE %s AND NOT u.username = ANY(%s)",
                [USERNAME_PREFIX + "%", names],
            )
            top = int(cursor.fetchone()[0])
            rng = random.Random(7)
            changed: list[object] = []
            self.contender_scores = {}
            for name in names:
                score = top + 10_000 + rng.randrange(CONTENDER_SPREAD)
                cursor.execute(
                    "UPDATE users SET current_score = %s, score_reached_at = now(), score_version = score_version + 1,"
                    " updated_at = now() WHERE username = %s RETURNING id",
                    [score, name],
                )
                ids = [row[0] for row in cursor.fetchall()]
                changed.extend(ids)
                self.contender_scores.update(dict.fromkeys((str(i) for i in ids), score))
                cursor.execute(
                    "INSERT INTO board_entries (board_id, period_key, user_id, score, sort_value, reached_at, version,"
                    " updated_at) SELECT 'global', 'all', id, %s, -%s, now(), 1, now() FROM users WHERE username = %s"
                    " ON CONFLICT (board_id, period_key, user_id) DO UPDATE SET score = EXCLUDED.score,"
                    " sort_value = EXCLUDED.sort_value, reached_at = now(), version = board_entries.version + 1,"
                    " updated_at = now()",
                    [score, score, name],
                )
        # Raw SQL bypasses the model signals that drop a changed player's card (accounts.cards).
        cards_drop(changed)

    def issue_jwts(self) -> None:
        from django.db import transaction

        from accounts.models import User
        from accounts.services import player_tokens_issue
        from bench.seed import USERNAME_PREFIX, username

        wanted = min(self.mode.active_players, self.players - CONTENDERS)
        names = [username(i) for i in range(CONTENDERS + wanted)]
        started = time.perf_counter()
        # Whole rows, as a login reads them: the token issue offers each player's card from them.
        users = User.objects.filter(username__startswith=USERNAME_PREFIX, username__in=names)
        by_name = {}
        with transaction.atomic():
            for user in users:
                self.jwt[str(user.pk)] = player_tokens_issue(user=user).access
                by_name[user.username] = str(user.pk)
        self.active = [by_name[n] for n in names[CONTENDERS:]]
        random.Random(3).shuffle(self.active)
        log(f"issued {len(self.jwt)} player JWTs in {time.perf_counter() - started:.1f}s")

    # ---------------------------------------------------------------------------------- requests
    def update_request(self, user_id: str, rng: random.Random, increment: int | None = None) -> bytes:
        import orjson

        from scores.action_tokens import mint

        increment = rng.randint(1, MAX_INCREMENT) if increment is None else increment
        token = mint(user_id=user_id, action_type=ACTION_TYPE, score_increment=increment).action_token
        body = orjson.dumps(
            {"action_token": token, "metadata": {"action_type": ACTION_TYPE, "level_id": f"level_{rng.randrange(100)}"}}
        )
        return (
            b"POST /v1/scores/update HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nX-Forwarded-For: %s\r\n"
            b"Content-Type: application/json\r\nUser-Agent: scoreboard-bench\r\nContent-Length: %d\r\n\r\n%s"
        ) % (HOST_HEADER.encode(), self.jwt[user_id].encode(), player_address(user_id), len(body), body)

    def update_file(self, name: str, count: int) -> str:
        """Pre-build ``count`` update requests (unique action tokens), each player at most once per file."""
        from bench.loadgen import write_requests

        pool = self.active
        if count > len(pool):
            raise SystemExit(f"{count} updates in one step need more than {len(pool)} active players")
        rng = random.Random(len(name) + count)
        out = []
        for _ in range(count):
            user_id = pool[self.cursor % len(pool)]
            self.cursor += 1
            out.append(self.update_request(user_id, rng))
        path = str(self.work / f"{name}.bin")
        write_requests(path, out)
        return path

    def top_changes_file(self, name: str, count: int) -> str:
        """``count`` contender updates that each change the global top 10, from the scores
        ``set_contenders`` left (``reset_contenders`` before each delivery step): each moves a
        contender from outside the top 10 to at most TOP_CHANGE_MARGIN points above the 10th place.

        Sent at TOP_CHANGES_RATE, the board then changes as steadily and as often as the bare server
        broadcasts. (Until 2026-12-07 the contenders sent 30 random increments a second from their
        tight cluster: nearly all of them changed the top 10 in a step's first second, few later, so
        a step's latency samples were mostly that burst.) A random contender, not the 11th, so that
        no player is updated more often than the per-player limit allows.
        """
        from bench.loadgen import write_requests

        rng = random.Random(len(name) + count)
        scores = dict(self.contender_scores)
        top = set(sorted(scores, key=scores.__getitem__, reverse=True)[:10])
        out = []
        for _ in range(count):
            tenth = min(top, key=scores.__getitem__)
            floor = scores[tenth] + TOP_CHANGE_MARGIN - MAX_INCREMENT
            eligible = [u for u in scores if u not in top and scores[u] >= floor]
            user_id = rng.choice(eligible)
            increment = scores[tenth] - scores[user_id] + rng.randint(1, TOP_CHANGE_MARGIN)
            scores[user_id] += increment
            top.remove(tenth)
            top.add(user_id)
            out.append(self.update_request(user_id, rng, increment=increment))
        path = str(self.work / f"{name}.bin")
        write_requests(path, out)
        return path

    @staticmethod
    def get_request(path: str, host: str = HOST_HEADER) -> str:
        return f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: scoreboard-bench\r\n\r\n"

    def loadgen(self, name: str, spec: dict[str, Any], wait: bool = True) -> Any:
        spec_path, out_path = self.work / f"{name}.spec.json", self.work / f"{name}.out.json"
        spec_path.write_text(json.dumps(spec))
        proc = subprocess.Popen(  # noqa: S603
            [sys.executable, "-m", "bench.loadgen", str(spec_path), str(out_path)], cwd=ROOT, start_new_session=True
        )
        if not wait:
            return proc, out_path
        proc.wait()
        return json.loads(out_path.read_text())

    @staticmethod
    def summarise(stream: dict[str, Any]) -> dict[str, Any]:
        scheduled = stream["scheduled"]
        failed = scheduled - stream["ok"]
        return {
            "offered_per_s": stream["rate"],
            "achieved_per_s": round(stream["achieved_per_s"], 1),
            "requests": scheduled,
            "ok": stream["ok"],
            "error_rate": round(failed / scheduled, 4) if scheduled else 0.0,
            "statuses": stream["statuses"],
            "errors": stream["errors"],
            "error_samples": stream.get("samples", {}),
            **percentiles(stream["latencies_ms"]),
        }

    # ------------------------------------------------------------------------------ measurements
    def warm_up(self) -> None:
        path = self.update_file("warmup", 200)
        spec = {
            "host": "127.0.0.1",
            "port": NGINX_PORT,
            "duration": 2.0,
            "streams": [
                {"name": "update", "rate": 100, "connections": 32, "requests_file": path},
                {"name": "read", "rate": 100, "connections": 16, "request": self.get_request("/v1/leaderboard")},
            ],
        }
        out = self.loadgen("warmup", spec)
        log(f"warm-up: {[(s['name'], s['statuses'], s['errors']) for s in out['streams']]}")

    def ladder_step(self, rate: int) -> dict[str, Any]:
        """One open-loop step: updates at ``rate``/s with reads alongside, latency, errors and CPU."""
        count = int(rate * self.mode.step_seconds)
        path = self.update_file(f"step{rate}", count)
        read_rate = max(10, int(rate * self.mode.read_share))
        spec = {
            "host": "127.0.0.1",
            "port": NGINX_PORT,
            "duration": self.mode.step_seconds,
            "streams": [
                {"name": "update", "rate": rate, "connections": 512, "requests_file": path},
                {
                    "name": "read",
                    "rate": read_rate,
                    "connections": 64,
                    "request": self.get_request("/v1/leaderboard"),
                },
            ],
        }
        with self.cpu_meter().measure() as used:
            out = self.loadgen(f"step{rate}", spec)
        update, read = (self.summarise(s) for s in out["streams"])
        answered = update["ok"] + read["ok"]
        # CPU per answered request (updates and reads together): the whole box and who paid for it.
        cpu = per_request_ms(used, answered)
        update["wsgi_cpu_ms_per_request"] = cpu["gunicorn"] if cpu else None
        log(
            f"updates {rate}/s: achieved {update['achieved_per_s']}/s p50 {update['p50']} p95 {update['p95']}"
            f" p99 {update['p99']} ms errors {update['error_rate']:.2%} {update['statuses']} {update['errors']}"
            f" | reads {read_rate}/s p95 {read['p95']} ms"
            f" | CPU ms/request {cpu}"
        )
        self.topology.check_alive()  # type: ignore[union-attr]
        return {"rate": rate, "update": update, "read": read, "cpu_ms_per_request": cpu}

    @staticmethod
    def passes(step: dict[str, Any]) -> bool:
        update = step["update"]
        return update["p95"] is not None and update["p95"] <= P95_LIMIT_MS and update["error_rate"] <= ERROR_LIMIT

    def update_ladder(self, key: str = "", steps_at: tuple[int, ...] | None = None) -> None:
        """The open-loop ladder; ``key`` names a scenario (e.g. ``boards3``) stored beside the main one."""
        steps: list[dict[str, Any]] = []
        # The ladder stops at its first failing rung, so the bar's total is the most it can run.
        most = len(steps_at or self.mode.update_steps) + REFINE_STEPS
        with progress(total=most, desc=f"update ladder{key and ' ' + key}", unit="steps", stream=sys.stdout) as bar:
            for rate in steps_at or self.mode.update_steps:
                steps.append(self.ladder_step(rate))
                bar.update()
                if not self.passes(steps[-1]):
                    break
                time.sleep(1.0)
            # Between the last passing rung and the first failing one, halve the gap a few times.
            for _ in range(REFINE_STEPS):
                between = refinement(steps, self.passes)
                if between is None:
                    break
                time.sleep(3.0)  # the failed rung's queue has drained (the load generator waited for it)
                steps.append(self.ladder_step(between))
                bar.update()
        steps.sort(key=lambda s: s["rate"])
        self.result[f"update_steps{key}"] = steps
        passing = [s for s in steps if self.passes(s)]
        best = max(passing, key=lambda s: s["update"]["achieved_per_s"]) if passing else None
        self.result[f"sustained{key}"] = (
            {
                "rate": best["rate"],
                **{k: best["update"][k] for k in ("achieved_per_s", "p50", "p95", "p99")},
                "read_p95": best["read"]["p95"],
                "read_per_s": best["read"]["achieved_per_s"],
            }
            if best
            else None
        )

    FLOOR_APP = "bench.lean_floor_wsgi:application"
    APP = "scoreboard.wsgi:application"

    def floor_ladder(self) -> None:
        """Issue #12's sustained rate beside its floor: the lean floor (bench/lean_floor.py, the same
        round trips in a bare Django view) served by the same gunicorn, behind the same nginx site, on
        the same PostgreSQL and Redis, driven by the same load generator and ladder (updates with reads
        alongside), right after the app's own ladder. The app is served again afterwards."""
        topology = self.topology
        assert topology is not None
        if topology.kind == "serve":
            log("served lean floor: skipped (BENCH_TOPOLOGY=serve supervises its own gunicorn)")
            return
        from bench.lean_floor import floor_keys_delete

        topology.wsgi_swap(self.FLOOR_APP)
        try:
            self.warm_up()
            self.update_ladder(key="_floor")
        finally:
            topology.wsgi_swap(self.APP)
            floor_keys_delete()
        floor = self.result.get("sustained_floor") or {}
        log(f"served lean floor: sustained {floor.get('achieved_per_s')} updates/s (p95 {floor.get('p95')} ms)")
        self.warm_up()

    # The three-board scenario of issues #11/#12: every update feeds global, a daily and a weekly board.
    SCENARIO_BOARDS = ("bench-daily", "bench-weekly")

    def boards_set(self, *, active: bool) -> None:
        """Create (or switch on/off) the scenario's extra boards, then wait out the processes' board cache."""
        import psycopg

        with psycopg.connect(os.environ["DATABASE_URL"], autocommit=True) as conn:
            for board_id, period in zip(self.SCENARIO_BOARDS, ("daily", "weekly"), strict=True):
                conn.execute(
                    "INSERT INTO boards (id, title, sort, operator, period, cron, tie_policy, action_types,"
                    " keep_periods, is_active, metadata, created_at, updated_at) VALUES (%s, %s, 'desc', 'incr', %s,"
                    " '', 'first_reached', '[]', 52, %s, '{}', now(), now())"
                    " ON CONFLICT (id) DO UPDATE SET is_active = excluded.is_active",
                    (board_id, board_id, period, active),
                )
        time.sleep(BOARD_CACHE_WAIT_SECONDS)

    def boards_ladder(self) -> None:
        """The ladder again with three boards fed, up to one rung past the single-board sustained rate."""
        sustained = self.result.get("sustained") or {}
        top = sustained.get("rate") or self.mode.update_steps[0]
        steps = tuple(r for r in self.mode.update_steps if r <= top)
        above = [r for r in self.mode.update_steps if r > top]
        steps = steps + tuple(above[:1])
        self.boards_set(active=True)
        try:
            self.update_ladder(key="_boards3", steps_at=steps)
        finally:
            self.boards_set(active=False)
        self.result["boards_fed_scenario"] = 1 + len(self.SCENARIO_BOARDS)

    def cpu_meter(self, **more: Callable[[], list[int]]) -> CpuMeter:
        """CPU by process group; PostgreSQL, Redis and nginx are found by name (see bench.cpu);
        ``more``: further groups (name -> their pids)."""
        topology = self.topology
        assert topology is not None

        def celery() -> list[int]:
            if topology.kind == "serve":
                return [pid for name, pid in topology.serve_pids.items() if name.startswith("celery")]
            return [proc.pid for name, proc in topology.procs.items() if name == "celery"]

        return CpuMeter(
            {"gunicorn": lambda: [topology.wsgi_master()], "asgi": topology.asgi_pids, "celery": celery, **more}
        )

    def saturation(self, name: str, port: int, path: str, connections: int = 32) -> dict[str, Any]:
        """Closed-loop throughput (each connection sends again as soon as it is answered)."""
        spec = {
            "host": "127.0.0.1",
            "port": port,
            "duration": self.mode.saturation_seconds,
            "streams": [
                {
                    "name": name,
                    "closed": True,
                    "connections": connections,
                    "request": self.get_request(path, f"127.0.0.1:{port}"),
                }
            ],
        }
        # Warm every worker first (each one imports the URLconf and views on its first request).
        self.loadgen(f"{name}-warm", dict(spec, duration=2.0))
        topo = self.topology
        assert topo is not None
        workers = [topo.procs["baseline_drf"].pid] if port == NGINX_BASELINE_PORT else [topo.wsgi_master()]
        cpu_before = cpu_seconds(workers)
        out = self.summarise(self.loadgen(name, spec)["streams"][0])
        cpu_used = cpu_seconds(workers) - cpu_before
        out["wsgi_cpu_ms_per_request"] = round(cpu_used * 1000 / out["ok"], 2) if out["ok"] else None
        log(
            f"{name}: {out['achieved_per_s']} req/s ok {out['ok']}/{out['requests']} {out['statuses']}"
            f" p50 {out['p50']} ms, worker CPU {out['wsgi_cpu_ms_per_request']} ms/request"
        )
        return out

    def lean_floor(self) -> None:
        """Issue #12's CPU figure beside its own baseline: ``bench.profile_update --compare 3,floor``
        (in-process worker CPU per three-board update, the real path and the lean floor alternating),
        on a scratch database and a Redis database of its own (BENCH_PROFILE_REDIS_URL; by default
        database 12 of the benchmark's Redis server: the tool writes index entries of its own players
        on boards named like the benchmark's)."""
        database_url = os.environ["DATABASE_URL"]
        redis_url = (
            os.environ.get("BENCH_PROFILE_REDIS_URL") or urlparse(os.environ["REDIS_URL"])._replace(path="/12").geturl()
        )
        scratch = f"{urlparse(database_url).path.lstrip('/')}_profile"
        with dbwrite.scratch_database(database_url, scratch) as url:
            done = subprocess.run(
                [sys.executable, "-m", "bench.profile_update", "--compare", "3,floor", "--rounds", "3",
                 "--updates", "1000", "--json"],
                env={**os.environ, "DATABASE_URL": url, "REDIS_URL": redis_url},
                cwd=ROOT, capture_output=True, text=True, check=True, timeout=900,
            )  # fmt: skip
        runs = json.loads(next(line for line in reversed(done.stdout.splitlines()) if line.startswith("{")))
        medians = {name: statistics.median(m["cpu_ms"] for m in ms) for name, ms in runs.items()}
        self.result["lean_floor"] = {
            "pipeline_cpu_ms": round(medians["3"], 3),
            "floor_cpu_ms": round(medians["floor"], 3),
            "runs": {name: [m["cpu_ms"] for m in ms] for name, ms in runs.items()},
        }
        log(f"profile_update, three boards: {medians['3']:.3f} ms per update, lean floor {medians['floor']:.3f} ms")

    def profile_updates(self) -> None:
        """Sample the gunicorn workers with py-spy while updates flow at a rate they sustain."""
        pyspy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        sustained = self.result.get("sustained")
        first = self.result["update_steps"][0]["update"]["achieved_per_s"] if self.result.get("update_steps") else 50
        rate = max(int(sustained["rate"] * 0.7) if sustained else int(first * 0.5), 20)
        count = int(rate * (self.mode.profile_seconds + 1))
        path = self.update_file("profile", count)
        master = self.topology.wsgi_master()  # type: ignore[union-attr]
        # Two samplers at once: wall time (--idle: where a request waits) and CPU (what burns the cores).
        runs = {
            "wall": (self.work / "profile-wall.txt", ["--idle"]),
            "cpu": (self.work / "profile-cpu.txt", ["--nonblocking"]),
        }
        spies = [
            subprocess.Popen(  # noqa: S603
                [
                    pyspy,
                    "record",
                    "--pid",
                    str(master),
                    "--subprocesses",
                    "--format",
                    "raw",
                    "--rate",
                    "97",
                    "--duration",
                    str(int(self.mode.profile_seconds)),
                    *flags,
                    "--output",
                    str(raw),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            for raw, flags in runs.values()
        ]
        spec = {
            "host": "127.0.0.1",
            "port": NGINX_PORT,
            "duration": self.mode.profile_seconds + 1,
            "streams": [{"name": "update", "rate": rate, "connections": 256, "requests_file": path}],
        }
        self.loadgen("profile", spec)
        for spy in spies:
            try:
                spy.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(spy.pid, signal.SIGKILL)
        profile: dict[str, Any] = {"rate": rate}
        for name, (raw, _) in runs.items():
            if raw.exists():
                profile[name] = report.hot_spots(raw)
                with open(raw, "rb") as src, gzip.open(RESULTS / f"latest-profile-{name}.txt.gz", "wb") as dst:
                    shutil.copyfileobj(src, dst)
        self.result["profile"] = profile
        if "cpu" in profile:
            log(
                "profile: top CPU frames: "
                + ", ".join(f"{h['frame']} {h['share']:.1%}" for h in profile["cpu"]["self"][:5])
            )

    def pgbench(self, url: str) -> dict[str, Any]:
        scratch = "sb_bench_pgbench"
        with dbwrite.scratch_database(url, scratch):
            dbwrite.psql_run(url, ["pgbench", "-i", "-q", "-s", "10", scratch])
            seconds = str(self.mode.pgbench_seconds)
            out = dbwrite.psql_run(url, ["pgbench", "-N", "-c", "8", "-j", "2", "-T", seconds, scratch])
        tps = next(float(line.split("=")[1].split()[0]) for line in out.stdout.splitlines() if line.startswith("tps"))
        sync = dbwrite.psql_run(url, ["psql", "-d", "postgres", "-Atc", "show synchronous_commit"]).stdout.strip()
        log(f"pgbench -N -c8 -j2: {tps:.0f} tx/s (synchronous_commit={sync})")
        return {"tps": round(tps, 1), "synchronous_commit": sync, "clients": 8}

    def redis_benchmark(self, url: str) -> dict[str, Any]:
        parsed = urlparse(url)
        db = (parsed.path or "/0").strip("/") or "0"
        base = [
            "redis-benchmark",
            "-h",
            parsed.hostname or "127.0.0.1",
            "-p",
            str(parsed.port or 6379),
            "--dbnum",
            db,
            "-n",
            str(self.mode.redis_requests),
            "-r",
            "100000",
            "-c",
            "50",
            "--csv",
        ]
        if parsed.password:
            base += ["-a", parsed.password]
        key = "sb:bench:zset"
        out: dict[str, Any] = {}
        for name, command in (
            ("zadd", ["ZADD", key, "__rand_int__", "m:__rand_int__"]),
            ("zrevrank", ["ZREVRANK", key, "m:__rand_int__"]),
        ):
            text = subprocess.run([*base, *command], capture_output=True, text=True, check=True).stdout  # noqa: S603
            row = [line for line in text.splitlines() if line and not line.startswith('"test"')][-1]
            out[name] = round(float(row.split(",")[1].strip('"')), 1)
        cli = ["redis-cli", "-h", parsed.hostname or "127.0.0.1", "-p", str(parsed.port or 6379), "-n", db]
        subprocess.run([*cli, "DEL", key], capture_output=True, check=False)  # noqa: S603
        log(f"redis-benchmark: ZADD {out['zadd']:.0f}/s ZREVRANK {out['zrevrank']:.0f}/s")
        return out

    # --------------------------------------------------------------------------------- delivery
    def ws_clients(
        self, port: int, k: int, tag: str, wait_first_frame: bool = False, connect: list[str] | None = None
    ) -> tuple[list[subprocess.Popen[str]], list[Path], int]:
        procs = max(1, math.ceil(k / WS_CLIENTS_PER_PROCESS))
        per = [k // procs + (1 if i < k % procs else 0) for i in range(procs)]
        started, outs = [], []
        for i, n in enumerate(per):
            out = self.work / f"ws-{tag}-{k}-{i}.json"
            outs.append(out)
            started.append(
                subprocess.Popen(  # noqa: S603
                    [
                        sys.executable,
                        "-m",
                        "bench.wsclients",
                        "--port",
                        str(port),
                        "--count",
                        str(n),
                        "--duration",
                        str(self.mode.ws_seconds),
                        "--out",
                        str(out),
                        *(["--wait-first-frame"] if wait_first_frame else []),
                        # BENCH_CLIENT_NICE=19: the client processes yield the shared cores to the servers.
                        *(["--nice", os.environ["BENCH_CLIENT_NICE"]] if os.environ.get("BENCH_CLIENT_NICE") else []),
                        *(arg for address in connect or () for arg in ("--connect", address)),
                    ],
                    cwd=ROOT,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                    start_new_session=True,
                )
            )
        connected = 0
        for proc in started:
            line = proc.stdout.readline().split()  # type: ignore[union-attr]
            connected += int(line[1]) if len(line) > 1 else 0
        return started, outs, connected

    def background_rate(self) -> int:
        """Updates/s flowing during the delivery test: the mode's rate, at most half of what was sustained."""
        sustained = self.result.get("sustained")
        if sustained:
            return max(10, min(self.mode.ws_background_rate, int(sustained["achieved_per_s"] * 0.5)))
        if self.result.get("update_steps"):
            return max(10, int(self.result["update_steps"][0]["update"]["achieved_per_s"] * 0.3))
        return self.mode.ws_background_rate

    def ws_step(
        self,
        port: int,
        k: int,
        tag: str,
        server_pids: list[int],
        background: bool,
        start_signal: int | None = None,
        connect: list[str] | None = None,
        storm: int = 0,
    ) -> dict[str, Any]:
        """One delivery step; ``storm``: that many more sockets connect during the window (a reconnect storm)."""
        before = rss_kb(server_pids)
        started = time.perf_counter()
        started_epoch = time.time()
        # The app sends a snapshot on connect: wait for it, so the connect backlog is not measured as
        # delivery latency (the bare server has no such snapshot: it broadcasts only after "go").
        procs, outs, connected = self.ws_clients(port, k, tag, wait_first_frame=start_signal is None, connect=connect)
        connect_s = time.perf_counter() - started
        time.sleep(1.0)
        after = rss_kb(server_pids)
        load = None
        access_log = self.topology.run_dir / "access.log" if self.topology is not None else Path("/nonexistent")
        access_offset = access_log.stat().st_size if access_log.exists() else 0
        if background:
            duration = self.mode.ws_seconds + 1
            bg_rate = self.background_rate()
            bg = self.update_file(f"ws-bg-{k}", int(bg_rate * duration))
            top = self.top_changes_file(f"ws-top-{k}", int(TOP_CHANGES_RATE * duration))
            spec = {
                "host": "127.0.0.1",
                "port": NGINX_PORT,
                "duration": duration,
                "streams": [
                    {"name": "update", "rate": bg_rate, "connections": 128, "requests_file": bg},
                    {
                        "name": "top",
                        "rate": TOP_CHANGES_RATE,
                        "connections": 16,
                        "requests_file": top,
                        "record_sent": True,
                    },
                ],
            }
            load = self.loadgen(f"ws-load-{tag}-{k}", spec, wait=False)
            time.sleep(0.5)
        if start_signal is not None:
            os.kill(start_signal, signal.SIGUSR1)  # the bare server starts broadcasting
            time.sleep(0.5)
        for proc in procs:
            proc.stdin.write("go\n")  # type: ignore[union-attr]
            proc.stdin.flush()  # type: ignore[union-attr]
        # The window's CPU: the servers measured, the client processes (they share the cores), the box.
        client_pids = [proc.pid for proc in procs]
        window_start = time.time()
        cpu_before = (process_cpu_seconds(server_pids), process_cpu_seconds(client_pids), box_busy_seconds())
        # And where the rest of the box goes in the window (gunicorn, PostgreSQL, Redis, ...): the
        # updates' share of the cores decides how long a POST waits for one.
        groups = contextlib.ExitStack()
        topology = self.topology
        assert topology is not None
        group_seconds = groups.enter_context(
            self.cpu_meter(
                asgi_reuseport=lambda: [
                    pid for spec in topology.reuseport_ports() for pid in topology.reuseport_pids(spec)
                ],
                clients=lambda: client_pids,
            ).measure()
        )
        children_before = children_cpu_seconds()  # the load generator, once it has exited
        stormers = self._storm(port, storm, tag) if storm else []
        updates = None
        command = "end\n"  # no score updates: each frame is measured from its published_at
        if load is None:
            time.sleep(max(0.0, window_start + self.mode.ws_seconds - time.time()))
            window_cpu = self._window_cpu(cpu_before, server_pids, client_pids, window_start)
            groups.close()
        else:
            # The clients read on after their window: the updates' last frames, then the final board.
            proc, out_path = load
            time.sleep(max(0.0, window_start + self.mode.ws_seconds - time.time()))
            window_cpu = self._window_cpu(cpu_before, server_pids, client_pids, window_start)
            groups.close()
            proc.wait()
            window_cpu["loadgen_cores"] = round(
                (children_cpu_seconds() - children_before) / (self.mode.ws_seconds + 1),
                3,  # its whole run
            )
            streams = json.loads(out_path.read_text())["streams"]
            updates = [self.summarise(s) for s in streams]
            posts = self.work / f"ws-posts-{tag}-{k}.json"
            posts.write_text(json.dumps([p for s in streams for p in s.get("sent", ())]))
            time.sleep(1.0)
            command = f"match {posts}\n"  # POST sent -> the first frame showing it
        for proc in stormers:  # connected for the window; now they leave
            with contextlib.suppress(OSError):
                proc.stdin.write("go\nend\n")  # type: ignore[union-attr]
                proc.stdin.flush()  # type: ignore[union-attr]
        for proc in procs:
            proc.stdin.write(command)  # type: ignore[union-attr]
            proc.stdin.flush()  # type: ignore[union-attr]
        for proc in procs:
            proc.wait(timeout=self.mode.ws_seconds + 120)
        for proc in stormers:
            proc.wait(timeout=120)
        latencies: list[float] = []
        published: list[float] = []
        lag: list[float] = []
        last_seqs: collections.Counter[int] = collections.Counter()
        frames = alive = not_reflected = without_frames = 0
        matched: dict[str, int] = {}
        per_frame: list[list[float]] = []
        to_publish: list[float] = []
        for out in outs:
            data = json.loads(out.read_text())
            to_publish = data.get("post_to_publish_ms", to_publish)  # the same POSTs in every client process
            per_frame += data.get("per_frame", [])
            latencies += data["latencies_ms"]
            published += data["published_ms"]
            lag += data["client_lag_ms"]
            frames += data["frames"]
            alive += data["alive_at_end"]
            not_reflected += data.get("not_reflected", 0)
            without_frames += data["sockets_without_frames"]
            last_seqs.update({int(seq): n for seq, n in data["last_seqs"].items()})
            for key in ("updates_in_window", "unseen_updates"):
                matched[key] = data.get(key, 0)  # the same updates in every client process
        newest = max(last_seqs, default=0)
        per_conn = (after - before) / connected if connected else None
        step: dict[str, Any] = {
            "clients": k,
            "connected": connected,
            "alive_at_end": alive,
            "connect_seconds": round(connect_s, 1),
            "frames": frames,
            "frames_per_client_per_s": round(frames / max(alive, 1) / self.mode.ws_seconds, 2),
            "server_rss_kb_before": before,
            "server_rss_kb_after": after,
            "kb_per_connection": round(per_conn, 1) if per_conn is not None else None,
            "server_pids": server_pids,
            "updates_during": updates,
            # POST sent -> frame received (kernel arrival) with updates running; else from published_at.
            "measured_from": "post_sent" if load is not None else "published_at",
            # Which engine read the client sockets (bench/wsclients.py: native C, or Python).
            "client_engine": client_engine(),
            **percentiles(latencies),
            "samples": len(latencies),
            "per_frame": per_frame,
            # published_at (inside the server) -> arrival: the fan-out part alone.
            "fanout": percentiles(published),
            # POST sent -> published_at of the first frame showing it, once per shown POST: the part before.
            "post_to_publish": percentiles(to_publish),
            # How late the client processes read after the kernel's stamp (kept out of the figures).
            "client_lag": percentiles(lag),
            **matched,
            "not_reflected": not_reflected,
            # No missing deliveries: every socket's last snapshot is the newest (the final board).
            # (Only with updates that stop: the bare server broadcasts until it is stopped.)
            "sockets_behind_final": (
                sum(n for seq, n in last_seqs.items() if seq < newest) + without_frames if load is not None else None
            ),
            # Cores in use during the window (CPU seconds / window seconds).
            "window_cpu": window_cpu,
            # The same window by process group (bench.cpu: "asgi" the processes behind nginx,
            # "asgi_reuseport" every SO_REUSEPORT group, whichever serves this step; "loadgen" stays 0
            # here: it exits after the window).
            "window_cores_by_group": {
                name: round(seconds / self.mode.ws_seconds, 3) for name, seconds in group_seconds.items()
            },
            # Per second of the window: the score updates' time behind nginx, p50/p95 (None: no updates
            # ran, or no access log to read).
            "update_timeline": (
                update_timeline(access_log, access_offset, window_start, window_start + self.mode.ws_seconds)
                if load is not None
                else None
            ),
            # The servers' garbage collections of 1 ms or more (scoreboard/gcpauses.py; the bare server has none).
            "gc_connect": gc_pauses(self._gc_dir(), server_pids, started_epoch, window_start),
            "gc_window": gc_pauses(self._gc_dir(), server_pids, window_start, window_start + self.mode.ws_seconds),
        }
        log(
            f"ws {tag} {k}: connected {connected} alive {alive} frames {frames} p50 {step['p50']} p95 {step['p95']}"
            f" p99 {step['p99']} ms ({step['measured_from']}; fan-out p95 {step['fanout']['p95']},"
            f" client lag p95 {step['client_lag']['p95']}); behind final {step['sockets_behind_final']};"
            f" {step['kb_per_connection']} KB/conn; cores {window_cpu}; by group {step['window_cores_by_group']};"
            f" GC in window {step['gc_window']['by_generation']}"
        )
        if step["update_timeline"]:
            log(
                f"ws {tag} {k}: score updates behind nginx, p95 ms per second of the window: "
                + " ".join(f"{row['p95']:.0f}" for row in step["update_timeline"])
            )
        time.sleep(2.0)
        return step

    def _storm(self, port: int, count: int, tag: str) -> list[subprocess.Popen[str]]:
        """``count`` more sockets connecting to ``port`` at once (not measured; they stay until the step ends)."""
        procs = max(1, math.ceil(count / WS_CLIENTS_PER_PROCESS))
        return [
            subprocess.Popen(  # noqa: S603
                [
                    sys.executable,
                    "-m",
                    "bench.wsclients",
                    "--port",
                    str(port),
                    "--count",
                    str(count // procs + (1 if i < count % procs else 0)),
                    "--duration",
                    "0",
                    "--out",
                    str(self.work / f"ws-storm-{tag}-{i}.json"),
                ],
                cwd=ROOT,
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                text=True,
                start_new_session=True,
            )
            for i in range(procs)
        ]

    def _gc_dir(self) -> Path:
        return self.topology.gc_log_dir if self.topology is not None else self.work / "gc"

    def _window_cpu(
        self,
        before: tuple[dict[int, float], dict[int, float], float],
        server_pids: list[int],
        client_pids: list[int],
        since: float,
    ) -> dict[str, float]:
        """Cores used since ``before`` by the servers, the WebSocket client processes and the whole box."""
        seconds = max(time.time() - since, 1e-6)
        servers, clients, box = before

        def used(now: dict[int, float], then: dict[int, float]) -> float:
            return sum(max(0.0, v - then.get(pid, 0.0)) for pid, v in now.items())

        out = {
            "servers_cores": round(used(process_cpu_seconds(server_pids), servers) / seconds, 3),
            "clients_cores": round(used(process_cpu_seconds(client_pids), clients) / seconds, 3),
            "box_cores": round((box_busy_seconds() - box) / seconds, 3),
        }
        return out

    def reset_contenders(self) -> None:
        """Put the contenders back in their tight cluster and replay the same contender updates.

        Without it the leaders pull away as the run goes on, fewer updates change the top 10 and a
        later delivery step carries fewer frames per second than an earlier one (0.9/s at 10,000
        sockets against 4/s at 1,000 in one run), so the steps were not measured under the same load.
        """
        from django.core.management import call_command

        self.set_contenders()
        call_command("rebuild_leaderboard", verbosity=0)

    def delivery(self) -> None:
        topo = self.topology
        assert topo is not None
        asgi_pids = topo.asgi_pids()
        # The headline is production's live-board path (deploy/serve.py's REALTIME_PORT, make serve, compose,
        # k8s): the realtime processes on one SO_REUSEPORT port, the kernel balancing, no proxy. Secondary:
        # the same steps through nginx to the two ASGI upstreams (what a browser gets on PORT).
        groups = topo.reuseport_ports()
        count = str(topo.realtime_processes)
        count = count if count in groups else next(iter(groups))
        live_port, live_pids = groups[count], topo.reuseport_pids(count)
        # Warm the ASGI processes (imports, the Redis subscription) so the first step's memory is sockets only.
        self.ws_step(live_port, WS_WARM_CLIENTS, "warm", live_pids, False)
        self.ws_step(NGINX_PORT, WS_WARM_CLIENTS, "warm-nginx", asgi_pids, False)
        app, app_nginx = [], []
        baseline = []
        total = len(self.mode.ws_steps) * 3
        with progress(total=total, desc="live delivery", unit="steps", stream=sys.stdout) as bar:
            for k in self.mode.ws_steps:
                self.reset_contenders()
                app.append({"path": f"reuseport{count}", **self.ws_step(live_port, k, "app", live_pids, True)})
                bar.update()
                self.reset_contenders()
                app_nginx.append({"path": "nginx", **self.ws_step(NGINX_PORT, k, "app-nginx", asgi_pids, True)})
                bar.update()
            for k in self.mode.ws_steps:
                # A fresh server per step, so its RSS growth is this step's sockets only.
                proc = topo.start_ws_baseline(WS_BASELINE_RATE, WS_FRAME_BYTES)
                time.sleep(0.5)
                baseline.append(self.ws_step(WS_BASELINE_PORT, k, "baseline", [proc.pid], False, start_signal=proc.pid))
                topo.stop("ws_baseline")
                bar.update()
        self.result["ws_app"] = app
        self.result["ws_app_nginx"] = app_nginx
        self.result["ws_baseline"] = baseline

    # -------------------------------------------------------------------------------------- run
    def run(self) -> None:
        database_url, redis_url = os.environ.get("DATABASE_URL", ""), os.environ.get("REDIS_URL", "")
        if not database_url.startswith("postgres") or not redis_url.startswith("redis"):
            raise SystemExit("make bench needs DATABASE_URL (PostgreSQL) and REDIS_URL (Redis)")
        ensure_database(database_url)
        raise_nofile()
        env = self.environment()
        os.environ.update(env)
        # Production's live-board processes, started beside the nginx upstreams (bench/topology.py).
        os.environ.setdefault("BENCH_ASGI_REUSEPORT", os.environ.get("BENCH_REALTIME_PROCESSES", "4"))
        self.result["started_at"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        self.result["machine"] = {
            "cpus": os.cpu_count(),
            "load_avg_at_start": os.getloadavg(),
            "ws_client_engine": client_engine(),
        }
        self.prepare_data()
        prepare_ws_clients()
        self.topology = Topology(run_dir=self.work / "run", env=env)
        self.topology.start_app()
        log(
            f"topology up ({self.topology.kind}): nginx :{NGINX_PORT}, gunicorn x{self.topology.wsgi_workers}"
            f" (threads: {os.environ.get('GUNICORN_THREADS', '1')}), "
            f"ASGI x{self.topology.asgi_processes}, live board x{self.topology.realtime_processes} (SO_REUSEPORT),"
            " celery"
        )
        self.result["topology"] = {
            "kind": self.topology.kind,
            "wsgi_workers": self.topology.wsgi_workers,
            "wsgi_threads": int(os.environ.get("GUNICORN_THREADS", "1")),
            "asgi_processes": self.topology.asgi_processes,
            "realtime_processes": self.topology.realtime_processes,
        }
        self.warm_up()
        if "baselines" not in self.skip:
            baselines: dict[str, Any] = {}
            if "stores" not in self.skip:  # --skip stores,updates,boards,delivery: the read scenario alone
                baselines["pgbench"] = self.pgbench(database_url)
                baselines["score_write"] = dbwrite.score_write_rate(
                    database_url, seconds=self.mode.pgbench_seconds, clients=8
                )
                log(f"score write statement alone, 8 connections: {baselines['score_write']['writes_per_s']:.0f}/s")
                baselines["redis"] = self.redis_benchmark(redis_url)
            baselines["bare_drf"] = self.saturation("bare_drf", NGINX_BASELINE_PORT, "/ping")
            self.result["baselines"] = baselines
            self.result["leaderboard_saturation"] = self.saturation("leaderboard", NGINX_PORT, "/v1/leaderboard")
            self.result["entries_saturation"] = self.saturation(
                "entries", NGINX_PORT, "/v1/boards/global/entries?limit=10"
            )
            # The bare view once more after the board reads: on a shared box the baseline moves too.
            baselines["bare_drf_after"] = self.saturation("bare_drf_after", NGINX_BASELINE_PORT, "/ping")
        if "updates" not in self.skip:
            self.update_ladder()
            self.floor_ladder()
            self.profile_updates()
            self.lean_floor()
        if "boards" not in self.skip and "updates" not in self.skip:
            self.boards_ladder()
        if "delivery" not in self.skip:
            self.delivery()
        self.result["finished_at"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mode", choices=sorted(MODES), default="short")
    parser.add_argument("--players", type=int, default=int(os.environ.get("BENCH_PLAYERS", "100000")))
    parser.add_argument("--active-players", type=int, default=0, help="override the mode's JWT-holding players")
    parser.add_argument("--steps", default="", help="comma-separated update rates to run instead of the mode's ladder")
    parser.add_argument(
        "--skip",
        default="",
        help="comma-separated: baselines, stores (pgbench, the write statement, redis-benchmark), updates,"
        " boards, delivery; --skip stores,updates,boards,delivery runs the read scenario alone",
    )
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="sb-bench-"))
    mode = MODES[args.mode]
    if args.active_players:
        mode = dataclasses.replace(mode, active_players=args.active_players)
    if args.steps:
        mode = dataclasses.replace(mode, update_steps=tuple(int(rate) for rate in args.steps.split(",")))
    bench = Bench(mode, args.players, work, frozenset(filter(None, args.skip.split(","))))

    def on_signal(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    failed: BaseException | None = None
    try:
        bench.run()
    except BaseException as exc:  # report what was measured, then re-raise
        failed = exc
        bench.result["error"] = repr(exc)
    finally:
        if bench.topology is not None:
            bench.topology.stop_all()
        shutil.rmtree(work, ignore_errors=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    paths = report.write(bench.result, RESULTS, stamp, partial=bool(bench.skip))
    log("report: " + ", ".join(str(p.relative_to(ROOT)) for p in paths))
    if failed is not None:
        raise failed


if __name__ == "__main__":
    main()
