"""Cost of one score update inside one process: CPU time and round trips, optionally a profile.

    DATABASE_URL=... REDIS_URL=... python -m bench.profile_update [--updates 2000] [--profile]
        [--stages] [--boards 1|2|3] [--compare 1,3] [--rounds 3]

Drives ``POST /v1/scores/update`` through Django's WSGI handler (the same middleware, DRF view,
services, PostgreSQL and Redis as under gunicorn, without the HTTP server) and prints the CPU time
per update (this process only: PostgreSQL's and Redis' own work is not in it) and how many Redis
and PostgreSQL round trips one update makes. Each of 2,000 players submits once per 2,000 updates
and their fraud windows are emptied first, so runs compare: give it a database and Redis of its
own. The game server's minting of each action token (about 0.1 ms) is included. A measuring tool,
not a test.

``--compare 3,3-nofraud``: ``-nofraud`` is the same scenario with the fraud engine uninstalled (what
the score service does without the fraud app: no replay pre-filter, no windows, no rules). It costs
*more* (3 Redis and 2 PostgreSQL round trips: the fraud engine's pre-write script also carries the
player card and the rate-limit counters), so the fraud engine's own share is read from ``--stages``
(the rules, and the pre-write call against the lean floor's) rather than from this difference.

``--compare 3,3-cold``: ``-cold`` drops the players' cards (``accounts.cards``) before each run, so
every update is a player's first of the hour: the lookup in PostgreSQL and one more Redis call.

``--compare 1,3,floor`` adds the lean floor (``bench/lean_floor.py``: the same round trips in a bare
Django view, three boards) as a baseline of its own, measured in the same rounds.

``--boards 3`` is the three-board scenario: every update feeds ``global``, a daily board and a
weekly board (``bench-daily``, ``bench-weekly``; ``--boards 1`` switches them off). ``--compare 1,3``
measures the scenarios alternately in one run (``--rounds`` times each, the same players, the same
load on the box) and prints each one's CPU per update and the difference, which is what a figure
on a shared machine can be trusted for.

``--instructions`` counts machine instructions per update instead of seconds: the tool runs itself
again under ``valgrind --tool=callgrind`` collecting only inside the measured loop (it runs through
``functools.reduce``, whose C function is the toggle; nothing on the request path calls it), so the
count is the same whatever else the box is doing (CPU seconds on this shared box vary +-30% from
round to round and up to 2x from hour to hour). One scenario per run (``--boards N`` or
``--compare floor``); about a minute and a half for 300 updates. Cache misses and syscall time are
not in it: a before/after figure, not a latency.
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import io
import json
import os
import pstats
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.topology import cpu_seconds
from bench.wsgi_request import update_environ, wsgi_status

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "scoreboard.settings")
os.environ.setdefault("DJANGO_DEBUG", "false")
for _name in ("DJANGO_SECRET_KEY", "JWT_SECRET", "ACTION_TOKEN_SECRET"):
    os.environ.setdefault(_name, f"profile-{_name.lower()}-" + "x" * 40)
os.environ.setdefault("LOG_LEVEL", "WARNING")
# As a gunicorn sync worker (deploy/gunicorn.conf.py): one persistent connection, no pool to borrow
# from and give back on every request (that borrowing was 2% of an update's CPU here, none in production).
os.environ.setdefault("DB_POOL", "0")
# Limits stay on, raised as in the benchmark (one process replays many players from one address).
os.environ.setdefault("RATE_LIMIT_USER_PER_MINUTE", "100000")
os.environ.setdefault("RATE_LIMIT_IP_PER_MINUTE", "10000000")
os.environ.setdefault("RATE_LIMIT_GLOBAL_PER_MINUTE", "10000000")
os.environ.setdefault("FRAUD_BLOCK_THRESHOLD", "0.95")
os.environ.setdefault("FRAUD_QUARANTINE_THRESHOLD", "0.95")

PLAYERS = 2000
FLOOR, FLOOR_BOARDS = "floor", 3
NO_FRAUD = "-nofraud"  # a scenario suffix: the same boards with the fraud engine uninstalled
COLD = "-cold"  # a scenario suffix: the players' cards dropped before the run (their first update of the hour)


def scenario_boards(scenario: str) -> int:
    """``3``, ``3-nofraud``, ``3-cold``, ``3-cold-nofraud`` -> 3; ValueError for anything else."""
    base = scenario.replace(NO_FRAUD, "").replace(COLD, "")
    if not base.isdigit():
        raise ValueError(scenario)
    return int(base)


# The extra boards of the three-board scenario: (id, period). ``global`` is always fed.
EXTRA_BOARDS = (("bench-daily", "daily"), ("bench-weekly", "weekly"))

# A stage nested in the one before it (printed indented, not added to the parts).
SUB = "  of which: "

# --stages: CPU time inside each step of the pipeline (DESIGN's order), measured around these callables.
STAGES = (
    # What gunicorn serves: the fast path (a usual update), or Django's handler behind it.
    ("scoreboard.fastpath", "FastPath.__call__", "whole request (fast path or Django, DRF, middleware)"),
    ("scoreboard.ratelimit", "IpRateLimitMiddleware._check", "per-IP limit (middleware)"),
    ("accounts.authentication", "ScopedJWTAuthentication.authenticate", "JWT + player lookup"),
    ("scoreboard.fastpath", "_player", "JWT, fast path (the player vouched for by the card)"),
    ("scoreboard.ratelimit", "ScoreUpdateRateLimit.allow_request", "per-player + global limits"),
    ("scoreboard.api", "StrictSerializer.is_valid", "body validation (DRF serializer)"),
    ("scores.action_tokens", "verify", "action token verification"),
    ("scores.events", "bus.assessor", "replay pre-filter + fraud engine (one Redis call + rules)"),
    ("fraud.windows", "attempt_record_and_load", SUB + "the pre-write Redis call (limits, replay, windows)"),
    ("fraud.population", "increment_tail", SUB + "the increment's tail in the population sketch"),
    ("fraud.rules", "assess", SUB + "the rules (fraud.rules.assess)"),
    ("scores.services", "_apply", "the write (PostgreSQL)"),
    ("scores.services", "_index_after_commit", "index update (Redis)"),
    ("scores.events", "emit_submission_applied", "fraud follow-up"),
    ("scores.events", "emit_score_applied", "live publish (every board)"),
)


class StageTimer:
    """Wraps the STAGES callables to add up the CPU time spent inside each."""

    def __init__(self) -> None:
        self.seconds: defaultdict[str, float] = defaultdict(float)

    def install(self) -> None:
        import importlib

        for module_name, path, label in STAGES:
            owner: Any = importlib.import_module(module_name)
            *parents, name = path.split(".")
            for parent in parents:
                owner = getattr(owner, parent)
            setattr(owner, name, self._timed(getattr(owner, name), label))

    def _timed(self, fn: Any, label: str) -> Any:
        seconds = self.seconds

        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.process_time()
            try:
                return fn(*args, **kwargs)
            finally:
                seconds[label] += time.process_time() - started

        return timed


class RoundTrips:
    """Counts Redis and PostgreSQL round trips by wrapping the client libraries' send calls."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def install(self) -> None:
        import psycopg
        import redis.connection

        counts = self.counts
        send = redis.connection.AbstractConnection.send_packed_command

        def counted_send(conn: Any, command: Any, check_health: bool = True) -> Any:
            counts["redis"] += 1
            return send(conn, command, check_health)

        redis.connection.AbstractConnection.send_packed_command = counted_send  # type: ignore[method-assign]
        execute = psycopg.Cursor.execute

        def counted_execute(cur: Any, *args: Any, **kwargs: Any) -> Any:
            counts["postgres"] += 1
            return execute(cur, *args, **kwargs)

        psycopg.Cursor.execute = counted_execute  # type: ignore[method-assign,assignment]


def boards_feed(count: int) -> list[str]:
    """Make every update feed ``count`` boards: ``global`` plus the first ``count - 1`` extra boards."""
    from scores import board_services, registry, services
    from scores.models import Board

    for i, (board_id, period) in enumerate(EXTRA_BOARDS):
        active = i < count - 1
        if not Board.objects.filter(pk=board_id).exists():
            board_services.board_create(board_id=board_id, title=board_id, period=period, is_active=active)
        elif Board.objects.filter(pk=board_id).values_list("is_active", flat=True).get() != active:
            board_services.board_update(board_id=board_id, is_active=active)
    registry.boards_cache_clear()
    services.known_periods_clear()
    return [spec.id for spec in registry.boards_active()]


def postgres_backend_pid() -> int:
    """The server process behind this process's database connection (PostgreSQL runs on this machine)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return int(cursor.fetchone()[0])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--updates", type=int, default=2000)
    parser.add_argument("--profile", action="store_true", help="print the top functions by own and cumulative time")
    parser.add_argument("--top", type=int, default=35)
    parser.add_argument("--stages", action="store_true", help="print the CPU time of each step of the pipeline")
    parser.add_argument("--boards", type=int, default=1, choices=range(1, len(EXTRA_BOARDS) + 2))
    parser.add_argument("--compare", default="", help="scenarios measured alternately, e.g. 1,3 or 3,3-nofraud,floor")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per scenario with --compare")
    parser.add_argument("--json", action="store_true", help="also print every measured run as one JSON line")
    parser.add_argument(
        "--read", action="store_true", help="measure GET /v1/leaderboard (anonymous, limit 10) instead of updates"
    )
    parser.add_argument(
        "--instructions", action="store_true", help="count instructions per update under callgrind (one scenario)"
    )
    args = parser.parse_args()
    if args.instructions and not os.environ.get(UNDER_CALLGRIND):
        if "," in args.compare or (args.compare and args.rounds != 1):
            parser.error("--instructions measures one scenario: --boards N or --compare floor, --rounds 1")
        return instructions_run(sys.argv[1:], args.updates)
    load0 = " ".join(f"{x:.2f}" for x in os.getloadavg())
    if not os.environ.get("DATABASE_URL", "").startswith("postgres") or not os.environ.get("REDIS_URL"):
        print("needs DATABASE_URL (PostgreSQL) and REDIS_URL", file=sys.stderr)
        return 2

    import django

    django.setup()
    from django.core.management import call_command
    from django.core.wsgi import get_wsgi_application

    from accounts.cards import card_key
    from accounts.models import User
    from accounts.services import player_tokens_issue
    from bench import lean_floor
    from bench.lean_floor import FloorHandler
    from fraud import windows
    from scoreboard.fastpath import FastPath
    from scoreboard.redis import get_redis
    from scores import action_tokens

    call_command("migrate", verbosity=0)
    players = []
    for i in range(PLAYERS):
        user, _ = User.objects.get_or_create(username=f"prof{i:04d}", defaults={"email": f"prof{i}@example.invalid"})
        players.append((user, player_tokens_issue(user=user).access))
    # What gunicorn serves (scoreboard.wsgi.application): the fast path in front of Django's handler.
    app = FastPath(get_wsgi_application())

    def read(user: Any, jwt: str) -> int:
        environ = {
            "REQUEST_METHOD": "GET",
            "PATH_INFO": "/v1/leaderboard",
            "QUERY_STRING": "limit=10",
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "8000",
            "HTTP_HOST": "127.0.0.1",
            "REMOTE_ADDR": "127.0.0.1",
            "wsgi.input": io.BytesIO(b""),
            "wsgi.url_scheme": "http",
            "wsgi.errors": sys.stderr,
        }
        return call(environ)

    floor_app = FloorHandler()
    handler: Any = app

    def call(environ: dict[str, Any]) -> int:
        return wsgi_status(handler, environ)

    def update(user: Any, jwt: str) -> int:
        token = action_tokens.mint(user_id=str(user.pk), action_type="LEVEL_COMPLETION", score_increment=100)
        return call(update_environ(token.action_token, jwt))

    request = read if args.read else update
    client = get_redis()
    assert client is not None
    scenarios = args.compare.split(",") if args.compare else [str(args.boards)]
    for s in scenarios:
        try:
            if s != FLOOR:
                scenario_boards(s)
        except ValueError:
            parser.error(f"--compare takes board counts, N{NO_FRAUD}, N{COLD} and 'floor', e.g. 1,3,3{COLD},floor")
    from scores import events

    with_fraud = events.bus.assessor

    def scenario_start(scenario: str) -> list[str]:
        nonlocal handler
        handler = floor_app if scenario == FLOOR else app
        # N-nofraud: the fraud engine uninstalled (what the pipeline does without the fraud app: the
        # limits counted in a call of their own, no replay pre-filter, no windows, no rules).
        events.set_assessor(events._allow_all if NO_FRAUD in scenario else with_fraud)
        return boards_feed(FLOOR_BOARDS if scenario == FLOOR else scenario_boards(scenario))

    # Warm up every scenario: connections, imports, scripts, periods; the first one also every player
    # the runs will use (their index entries and player cards: a player active within the card's
    # hour, the usual case; a cold card costs the lookup and one more Redis call, accounts.cards).
    for n, scenario in enumerate(scenarios):
        scenario_start(scenario)
        for i in range(min(max(200, args.updates), PLAYERS) if n == 0 else 200):
            update(*players[i])
    trips = RoundTrips()
    trips.install()
    stages = StageTimer()
    if args.stages:
        stages.install()
    profiler = cProfile.Profile(time.process_time) if args.profile else None
    backend = postgres_backend_pid()
    results: dict[str, list[Measured]] = defaultdict(list)
    rounds = args.rounds if args.compare else 1
    for _round in range(rounds):
        for count in scenarios:
            fed = scenario_start(count)
            # Each measured run starts from empty fraud windows for its players, so runs compare (no rule fires).
            client.delete(*[windows._player_key(str(user.pk)) for user, _ in players], windows._ip_key("127.0.0.1"))
            if COLD in count:
                client.delete(*[card_key(str(user.pk)) for user, _ in players])
            trips.counts.clear()
            stages.seconds.clear()
            statuses: Counter[int] = Counter()
            backend0 = cpu_seconds([backend])
            usage0, wall0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
            if profiler:
                profiler.enable()
            # Through functools.reduce: the C function callgrind collects inside (--instructions).
            functools.reduce(_count_into(statuses, request, players), range(args.updates), None)
            if profiler:
                profiler.disable()
            usage1, wall = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter() - wall0
            results[count].append(
                Measured(
                    boards=fed,
                    n=args.updates,
                    statuses=dict(statuses),
                    user_s=usage1.ru_utime - usage0.ru_utime,
                    system_s=usage1.ru_stime - usage0.ru_stime,
                    wall_s=wall,
                    backend_s=cpu_seconds([backend]) - backend0,
                    trips=dict(trips.counts),
                    stages=dict(stages.seconds),
                )
            )
    print(f"load average before/after: {load0} / {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    for count in scenarios:
        for m in results[count]:
            m.print(stages=args.stages and count != FLOOR)
    if args.compare:
        best = {count: min(results[count], key=lambda m: m.cpu_ms) for count in scenarios}
        median = {count: statistics.median(m.cpu_ms for m in results[count]) for count in scenarios}
        first = scenarios[0]
        print(f"CPU per update, {rounds} alternating rounds of {args.updates} (best / median):")
        for count in scenarios:
            name = "lean floor (3 boards)" if count == FLOOR else f"boards={count}"
            print(
                f"  {name}: {best[count].cpu_ms:.3f} / {median[count]:.3f} ms"
                f"  ({best[count].cpu_ms - best[first].cpu_ms:+.3f} / {median[count] - median[first]:+.3f} ms"
                f" vs {first}; x{median[count] / median[first]:.2f} median)"
            )
        if FLOOR in scenarios:
            for count in scenarios:
                if count != FLOOR:
                    print(f"  boards={count} / lean floor: x{median[count] / median[FLOOR]:.2f} (median)")
    lean_floor.floor_keys_delete()
    if args.json:
        print(json.dumps({str(c): [m.as_dict() for m in ms] for c, ms in results.items()}))
    if profiler:
        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out)
        if dump := os.environ.get("PROFILE_UPDATE_DUMP"):
            stats.dump_stats(dump)  # for pstats' print_callers / snakeviz
        stats.sort_stats("tottime").print_stats(args.top)
        stats.sort_stats("cumulative").print_stats(args.top)
        print(out.getvalue())
    return 0


UNDER_CALLGRIND = "PROFILE_UPDATE_UNDER_CALLGRIND"
CALLGRIND_TOGGLE = "functools_reduce"


def _count_into(statuses: Counter[int], request: Any, players: list[Any]) -> Any:
    def step(_acc: None, i: int) -> None:
        statuses[request(*players[i % PLAYERS])] += 1

    return step


def instructions_run(argv: list[str], updates: int) -> int:
    """This tool again under callgrind, collecting inside the measured loop only; instructions per update."""
    out = Path(tempfile.mkdtemp(prefix="profile-update-cg-")) / "callgrind.out"
    command = [
        "valgrind",
        "--tool=callgrind",
        f"--toggle-collect={CALLGRIND_TOGGLE}",
        f"--callgrind-out-file={out}",
        sys.executable,
        "-m",
        "bench.profile_update",
        *argv,
    ]
    env = {**os.environ, UNDER_CALLGRIND: "1", "PYTHONHASHSEED": os.environ.get("PYTHONHASHSEED", "0")}
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)  # noqa: S603
    print("\n".join(line for line in done.stdout.splitlines() if not line.startswith("{")))
    if done.returncode != 0 or not out.exists():
        print(done.stderr[-2000:], file=sys.stderr)
        return done.returncode or 1
    totals = [line for line in out.read_text().splitlines() if line.startswith(("summary:", "totals:"))]
    instructions = int(totals[-1].split()[1])
    print(f"instructions per update: {instructions / updates:,.0f} ({instructions:,} in {updates} updates, callgrind)")
    return 0


@dataclass
class Measured:
    """One measured run of ``n`` requests."""

    boards: list[str]
    n: int
    statuses: dict[int, int]
    user_s: float
    system_s: float
    wall_s: float
    backend_s: float
    trips: dict[str, int]
    stages: dict[str, float]

    @property
    def cpu_ms(self) -> float:
        return (self.user_s + self.system_s) / self.n * 1000

    def as_dict(self) -> dict[str, Any]:
        return {
            "boards": self.boards,
            "statuses": self.statuses,
            "cpu_ms": round(self.cpu_ms, 4),
            "wall_ms": round(self.wall_s / self.n * 1000, 4),
            "postgres_backend_ms": round(self.backend_s / self.n * 1000, 4),
            "redis_trips": self.trips.get("redis", 0) / self.n,
            "postgres_trips": self.trips.get("postgres", 0) / self.n,
            "stages_ms": {k: round(v / self.n * 1000, 4) for k, v in self.stages.items()},
        }

    def print(self, *, stages: bool) -> None:
        n = self.n
        print(f"boards fed: {', '.join(self.boards)}; statuses: {self.statuses}")
        print(
            f"per request: {self.cpu_ms:.2f} ms CPU in this process "
            f"(user {self.user_s / n * 1000:.2f}, system {self.system_s / n * 1000:.2f}), "
            f"{self.wall_s / n * 1000:.2f} ms wall"
        )
        print(
            f"round trips per request: redis {self.trips.get('redis', 0) / n:.2f}, "
            f"postgres {self.trips.get('postgres', 0) / n:.2f}"
        )
        print(f"PostgreSQL's own CPU per request (this connection's backend): {self.backend_s / n * 1000:.2f} ms")
        if stages:
            whole = STAGES[0][2]
            for _module, _path, label in STAGES:
                print(f"  {self.stages.get(label, 0.0) / n * 1000:5.2f} ms  {label}")
            parts = sum(v for k, v in self.stages.items() if k != whole and not k.startswith(SUB))
            print(
                f"  {(self.stages.get(whole, 0.0) - parts) / n * 1000:5.2f} ms  "
                "the rest: Django, DRF, middleware, rendering"
            )


if __name__ == "__main__":
    sys.exit(main())
