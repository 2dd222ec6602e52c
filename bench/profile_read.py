"""CPU per read inside one process: the board reads beside the bare DRF view, in the same harness.

    DATABASE_URL=... REDIS_URL=... python -m bench.profile_read [--requests 3000] [--rounds 3]
        [--targets bare,leaderboard,entries] [--profile leaderboard]

Each target runs in a fresh Python process of its own (the bare DRF view needs its own settings,
``bench.baseline_drf``), driven through Django's WSGI handler exactly as gunicorn calls it (no HTTP
server), and the targets alternate round by round, so a figure and its baseline see the same load on
this shared box. A worker warms up (imports, connections, scripts, the first copy of the page), then
times ``--requests`` reads and reports the CPU of its whole process per read (user + system,
``getrusage``: background threads included), the wall time, the statuses, and how many Redis and
PostgreSQL round trips one read made.

- ``bare``: ``bench.baseline_drf`` (``GET /ping``, no middleware), the figure ``make bench`` compares
  the leaderboard with.
- ``leaderboard``: ``GET /v1/leaderboard`` (anonymous, top 10) through ``scoreboard.wsgi.application``,
  as gunicorn serves it: the WSGI fast path (``scoreboard/fastpath.py``) answers it.
- ``leaderboard-django``: the same with ``FAST_PATH=false``: Django's handler, every middleware, DRF.
- ``entries``: ``GET /v1/boards/global/entries?limit=10`` (the fast path too); ``entries-django`` without it.

The board read is an unchanged board (the common case the page cache is for); ``--writes N`` adds a
score change of the board every N reads (each one makes the next read of every process a miss).
The per-IP limit stays on (raised as in ``make bench``: every read comes from 127.0.0.1).
``--profile TARGET`` runs that target once under cProfile and prints the top functions. A
measuring tool, not a test.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import resource
import statistics
import subprocess
import sys
import time
from collections import Counter
from typing import Any

from bench.wsgi_request import wsgi_status

TARGETS = {
    "bare": ("bench.baseline_drf.settings", "/ping", ""),
    "leaderboard": ("scoreboard.settings", "/v1/leaderboard", ""),
    "leaderboard-django": ("scoreboard.settings", "/v1/leaderboard", ""),
    "entries": ("scoreboard.settings", "/v1/boards/global/entries", "limit=10"),
    "entries-django": ("scoreboard.settings", "/v1/boards/global/entries", "limit=10"),
}
# The same read with the WSGI fast path off (scoreboard/fastpath.py): Django's handler, middleware, DRF.
TARGET_ENV = {"leaderboard-django": {"FAST_PATH": "false"}, "entries-django": {"FAST_PATH": "false"}}
SEED_PLAYERS = 200
WARM_REQUESTS = 300
APP_ENV = {
    "DJANGO_DEBUG": "false",
    "LOG_LEVEL": "WARNING",
    "RATE_LIMIT_IP_PER_MINUTE": "10000000",
    "RATE_LIMIT_USER_PER_MINUTE": "100000",
    "RATE_LIMIT_GLOBAL_PER_MINUTE": "10000000",
    "FRAUD_BLOCK_THRESHOLD": "0.95",
    "FRAUD_QUARANTINE_THRESHOLD": "0.95",
}


def environ_of(path: str, query: str) -> dict[str, Any]:
    return {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "HTTP_HOST": "127.0.0.1",
        "REMOTE_ADDR": "127.0.0.1",
        "wsgi.input": io.BytesIO(b""),
        "wsgi.url_scheme": "http",
        "wsgi.errors": sys.stderr,
    }


def _count_round_trips(counts: Counter[str]) -> None:
    import redis.connection

    send = redis.connection.AbstractConnection.send_packed_command

    def counted_send(conn: Any, command: Any, check_health: bool = True) -> Any:
        counts["redis"] += 1
        return send(conn, command, check_health)

    redis.connection.AbstractConnection.send_packed_command = counted_send  # type: ignore[method-assign]
    try:
        import psycopg
    except ImportError:  # the bare project has no database
        return
    execute = psycopg.Cursor.execute

    def counted_execute(cur: Any, *args: Any, **kwargs: Any) -> Any:
        counts["postgres"] += 1
        return execute(cur, *args, **kwargs)

    psycopg.Cursor.execute = counted_execute  # type: ignore[method-assign,assignment]


def _seed_board() -> None:
    """At least SEED_PLAYERS players on the global board (scored through the real update path)."""
    from django.core.management import call_command
    from django.core.wsgi import get_wsgi_application

    from accounts.models import User
    from accounts.services import player_tokens_issue
    from bench.wsgi_request import update_environ
    from scores import action_tokens
    from scores.models import BoardEntry
    from scores.ranking import redis_index

    call_command("migrate", verbosity=0)
    if BoardEntry.objects.filter(board_id="global").count() >= SEED_PLAYERS:
        index = redis_index()
        if index is not None and not index.is_built():  # the Redis database was emptied meanwhile
            call_command("rebuild_leaderboard", verbosity=0)
        return
    app = get_wsgi_application()
    for i in range(SEED_PLAYERS):
        user, _ = User.objects.get_or_create(username=f"read{i:04d}", defaults={"email": f"read{i}@example.invalid"})
        token = action_tokens.mint(user_id=str(user.pk), action_type="LEVEL_COMPLETION", score_increment=1 + i % 900)
        environ = update_environ(token.action_token, player_tokens_issue(user=user).access)
        b"".join(app(environ, lambda *a: None))  # type: ignore[arg-type]


def _score_change() -> Any:
    """A callable that changes the global board (one player's score) through the real update path."""
    from django.core.wsgi import get_wsgi_application

    from accounts.models import User
    from accounts.services import player_tokens_issue
    from bench.wsgi_request import update_environ
    from scores import action_tokens

    app = get_wsgi_application()
    users = [(u, player_tokens_issue(user=u).access) for u in User.objects.filter(username__startswith="read")[:50]]
    state = {"i": 0}

    def change() -> None:
        user, jwt = users[state["i"] % len(users)]
        state["i"] += 1
        token = action_tokens.mint(user_id=str(user.pk), action_type="LEVEL_COMPLETION", score_increment=1)
        b"".join(app(update_environ(token.action_token, jwt), lambda *a: None))  # type: ignore[arg-type]

    return change


def worker(target: str, requests: int, writes: int, profile: bool) -> dict[str, Any]:
    settings_module, path, query = TARGETS[target]
    os.environ["DJANGO_SETTINGS_MODULE"] = settings_module
    if target != "bare":
        os.environ.update(TARGET_ENV.get(target, {}))
        for name, value in APP_ENV.items():
            os.environ.setdefault(name, value)
        for name in ("DJANGO_SECRET_KEY", "JWT_SECRET", "ACTION_TOKEN_SECRET"):
            os.environ.setdefault(name, f"profile-{name.lower()}-" + "x" * 40)
    import django

    django.setup()
    from django.core.wsgi import get_wsgi_application

    change = None
    if target != "bare":
        _seed_board()
        if writes:
            change = _score_change()
    app: Any = get_wsgi_application()
    if target != "bare":
        from scoreboard.wsgi import application as app  # what gunicorn serves (the fast path in front)
    statuses: Counter[int] = Counter()

    def read() -> None:
        statuses[wsgi_status(app, environ_of(path, query))] += 1

    for _ in range(WARM_REQUESTS):
        read()
    statuses.clear()
    trips: Counter[str] = Counter()
    _count_round_trips(trips)
    profiler = cProfile.Profile(time.process_time) if profile else None
    changes = 0
    usage0: Any = resource.getrusage(resource.RUSAGE_SELF)
    wall0 = time.perf_counter()
    if profiler:
        profiler.enable()
    for i in range(requests):
        if change is not None and i % writes == 0:
            usage_w = resource.getrusage(resource.RUSAGE_SELF)
            change()
            changes += 1
            # The change's own cost is not a read's: take it out of the read's CPU.
            usage_w1 = resource.getrusage(resource.RUSAGE_SELF)
            usage0 = _shifted(usage0, usage_w1, usage_w)
        read()
    if profiler:
        profiler.disable()
    usage1, wall = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter() - wall0
    cpu = (usage1.ru_utime - usage0.ru_utime) + (usage1.ru_stime - usage0.ru_stime)
    out = {
        "target": target,
        "requests": requests,
        "statuses": {str(k): v for k, v in statuses.items()},
        "cpu_ms": round(cpu / requests * 1000, 4),
        "wall_ms": round(wall / requests * 1000, 4),
        "redis_trips": round(trips["redis"] / requests, 3),
        "postgres_trips": round(trips["postgres"] / requests, 3),
        "changes": changes,
    }
    if profiler:
        text = io.StringIO()
        stats = pstats.Stats(profiler, stream=text)
        stats.sort_stats("tottime").print_stats(30)
        stats.sort_stats("cumulative").print_stats(40)
        out["profile"] = text.getvalue()
    return out


class _Usage:
    def __init__(self, utime: float, stime: float) -> None:
        self.ru_utime, self.ru_stime = utime, stime


def _shifted(start: Any, after: Any, before: Any) -> _Usage:
    """``start`` moved forward by the CPU spent between ``before`` and ``after``."""
    return _Usage(
        start.ru_utime + (after.ru_utime - before.ru_utime), start.ru_stime + (after.ru_stime - before.ru_stime)
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--targets", default="bare,leaderboard,leaderboard-django,entries,entries-django")
    parser.add_argument("--writes", type=int, default=0, help="a score change of the board every N reads (0: none)")
    parser.add_argument("--profile", default="", help="run this target once under cProfile instead")
    parser.add_argument("--worker", default="", help=argparse.SUPPRESS)
    parser.add_argument("--json", action="store_true", help="also print every run as one JSON line")
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.requests, args.writes, bool(args.profile))))
        return 0
    targets = [args.profile] if args.profile else args.targets.split(",")
    unknown = [t for t in targets if t not in TARGETS]
    if unknown:
        parser.error(f"unknown targets {unknown}; choose from {sorted(TARGETS)}")
    if not os.environ.get("DATABASE_URL", "").startswith("postgres") or not os.environ.get("REDIS_URL"):
        print("needs DATABASE_URL (PostgreSQL) and REDIS_URL", file=sys.stderr)
        return 2
    load0 = " ".join(f"{x:.2f}" for x in os.getloadavg())
    started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    runs: dict[str, list[dict[str, Any]]] = {t: [] for t in targets}
    for _round in range(1 if args.profile else args.rounds):
        for target in targets:
            argv = [sys.executable, "-m", "bench.profile_read", "--worker", target, "--requests", str(args.requests)]
            argv += ["--writes", str(args.writes)] + (["--profile", target] if args.profile else [])
            done = subprocess.run(argv, check=True, capture_output=True, text=True)  # noqa: S603
            run = json.loads(done.stdout.strip().splitlines()[-1])
            runs[target].append(run)
            if "profile" in run:
                print(run.pop("profile"))
    load1 = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"{started}; load average before/after: {load0} / {load1}; {args.requests} reads per run")
    base = statistics.median(r["cpu_ms"] for r in runs["bare"]) if runs.get("bare") else None
    for target in targets:
        cpu = [r["cpu_ms"] for r in runs[target]]
        last = runs[target][-1]
        ratio = f", x{statistics.median(cpu) / base:.2f} bare" if base else ""
        each = ", ".join(f"{c:.3f}" for c in cpu)
        print(
            f"  {target:12s} CPU per read median {statistics.median(cpu):.3f} ms (runs {each}){ratio};"
            f" redis {last['redis_trips']:.2f} / postgres {last['postgres_trips']:.2f} round trips;"
            f" statuses {last['statuses']}"
        )
    if args.json:
        print(json.dumps(runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
