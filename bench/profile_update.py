"""Cost of one score update inside one process: CPU time and round trips, optionally a profile.

    DATABASE_URL=... REDIS_URL=... python -m bench.profile_update [--updates 2000] [--profile]

Drives ``POST /v1/scores/update`` through Django's WSGI handler (the same middleware, DRF view,
services, PostgreSQL and Redis as under gunicorn, without the HTTP server) and prints the CPU time
per update (this process only: PostgreSQL's and Redis' own work is not in it) and how many Redis
and PostgreSQL round trips one update makes. Each of 2,000 players submits once per 2,000 updates
and their fraud windows are emptied first, so runs compare: give it a database and Redis of its
own. The game server's minting of each action token (about 0.1 ms) is included. A measuring tool,
not a test.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import resource
import sys
import time
from collections import Counter, defaultdict
from typing import Any

from bench.topology import cpu_seconds

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "scoreboard.settings")
os.environ.setdefault("DJANGO_DEBUG", "false")
for _name in ("DJANGO_SECRET_KEY", "JWT_SECRET", "ACTION_TOKEN_SECRET"):
    os.environ.setdefault(_name, f"profile-{_name.lower()}-" + "x" * 40)
os.environ.setdefault("LOG_LEVEL", "WARNING")
# Limits stay on, raised as in the benchmark (one process replays many players from one address).
os.environ.setdefault("RATE_LIMIT_USER_PER_MINUTE", "100000")
os.environ.setdefault("RATE_LIMIT_IP_PER_MINUTE", "10000000")
os.environ.setdefault("RATE_LIMIT_GLOBAL_PER_MINUTE", "10000000")
os.environ.setdefault("FRAUD_BLOCK_THRESHOLD", "0.95")

PLAYERS = 2000

# --stages: CPU time inside each step of the pipeline (DESIGN's order), measured around these callables.
STAGES = (
    ("django.core.handlers.wsgi", "WSGIHandler.__call__", "whole request (Django, DRF, middleware included)"),
    ("scoreboard.ratelimit", "IpRateLimitMiddleware._check", "per-IP limit (middleware)"),
    ("accounts.authentication", "ScopedJWTAuthentication.authenticate", "JWT + player lookup"),
    ("scoreboard.ratelimit", "ScoreUpdateRateLimit.allow_request", "per-player + global limits"),
    ("scoreboard.api", "StrictSerializer.is_valid", "body validation (DRF serializer)"),
    ("scores.action_tokens", "verify", "action token verification"),
    ("fraud.services", "score_attempt_assess", "replay pre-filter + fraud engine (one Redis call + rules)"),
    ("scores.services", "_apply", "the write (PostgreSQL)"),
    ("scores.services", "_index_after_commit", "index update (Redis)"),
    ("fraud.services", "score_applied_record", "fraud follow-up"),
    ("realtime.services", "score_changed", "live publish"),
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
    parser.add_argument(
        "--read", action="store_true", help="measure GET /v1/leaderboard (anonymous, limit 10) instead of updates"
    )
    args = parser.parse_args()
    if not os.environ.get("DATABASE_URL", "").startswith("postgres") or not os.environ.get("REDIS_URL"):
        print("needs DATABASE_URL (PostgreSQL) and REDIS_URL", file=sys.stderr)
        return 2

    import django

    django.setup()
    from django.core.management import call_command
    from django.core.wsgi import get_wsgi_application

    from accounts.models import User
    from accounts.services import player_tokens_issue
    from scoreboard.redis import get_redis
    from scores import action_tokens

    call_command("migrate", verbosity=0)
    players = []
    for i in range(PLAYERS):
        user, _ = User.objects.get_or_create(username=f"prof{i:04d}", defaults={"email": f"prof{i}@example.invalid"})
        players.append((user, player_tokens_issue(user=user).access))
    app = get_wsgi_application()

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

    def call(environ: dict[str, Any]) -> int:
        status: list[str] = []
        response = app(environ, lambda s, h, *a: status.append(s))  # type: ignore[arg-type]
        b"".join(response)
        response.close()
        return int(status[0].split()[0])

    def update(user: Any, jwt: str) -> int:
        token = action_tokens.mint(user_id=str(user.pk), action_type="LEVEL_COMPLETION", score_increment=100)
        body = json.dumps({"action_token": token.action_token}).encode()
        environ = {
            "REQUEST_METHOD": "POST",
            "PATH_INFO": "/v1/scores/update",
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "8000",
            "HTTP_HOST": "127.0.0.1",
            "REMOTE_ADDR": "127.0.0.1",
            "CONTENT_TYPE": "application/json",
            "CONTENT_LENGTH": str(len(body)),
            "HTTP_AUTHORIZATION": f"Bearer {jwt}",
            "wsgi.input": io.BytesIO(body),
            "wsgi.url_scheme": "http",
            "wsgi.errors": sys.stderr,
        }
        return call(environ)

    for i in range(200):  # warm up: connections, imports, scripts (and a board to read)
        update(*players[i])
    request = read if args.read else update
    # The measured run starts from empty fraud windows for its players, so runs compare (no rule fires).
    client = get_redis()
    assert client is not None
    client.delete(*[f"sb:fraud:p:{user.pk}" for user, _ in players], "sb:fraud:ip:127.0.0.1")
    trips = RoundTrips()
    trips.install()
    stages = StageTimer()
    if args.stages:
        stages.install()
    profiler = cProfile.Profile(time.process_time) if args.profile else None
    statuses: Counter[int] = Counter()
    backend = postgres_backend_pid()
    backend0 = cpu_seconds([backend])
    usage0, wall0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    if profiler:
        profiler.enable()
    for i in range(args.updates):
        statuses[request(*players[i % PLAYERS])] += 1
    if profiler:
        profiler.disable()
    usage1, wall = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter() - wall0
    backend_s = cpu_seconds([backend]) - backend0
    user_s, system_s = usage1.ru_utime - usage0.ru_utime, usage1.ru_stime - usage0.ru_stime
    n = args.updates
    print(f"statuses: {dict(statuses)}")
    print(
        f"per request: {(user_s + system_s) / n * 1000:.2f} ms CPU in this process "
        f"(user {user_s / n * 1000:.2f}, system {system_s / n * 1000:.2f}), {wall / n * 1000:.2f} ms wall"
    )
    redis_trips, pg_trips = trips.counts["redis"] / n, trips.counts["postgres"] / n
    print(f"round trips per request: redis {redis_trips:.2f}, postgres {pg_trips:.2f}")
    print(f"PostgreSQL's own CPU per request (this connection's backend): {backend_s / n * 1000:.2f} ms")
    if args.stages:
        whole = STAGES[0][2]
        for _module, _path, label in STAGES:
            print(f"  {stages.seconds[label] / n * 1000:5.2f} ms  {label}")
        parts = sum(v for k, v in stages.seconds.items() if k != whole)
        print(f"  {(stages.seconds[whole] - parts) / n * 1000:5.2f} ms  the rest: Django, DRF, middleware, rendering")
    if profiler:
        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out)
        stats.sort_stats("tottime").print_stats(args.top)
        stats.sort_stats("cumulative").print_stats(args.top)
        print(out.getvalue())
    return 0


if __name__ == "__main__":
    sys.exit(main())
