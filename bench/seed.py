"""Seed a realistic player population straight into PostgreSQL with COPY, then build the Redis index.

Players are ``bench000000``... with an unusable password (no hashing cost), a Pareto-skewed score
(a long tail of casual players and a few very high scores) and a reach time spread over 30 days.
Idempotent: only the players that are missing are added, so a second run is nearly free.

    python -m bench.seed --players 100000
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import time
import uuid

USERNAME_PREFIX = "bench"
EMAIL_DOMAIN = "bench.invalid"
PARETO_ALPHA = 1.16  # the "80/20" shape
SCORE_SCALE = 100
SCORE_CAP = 50_000_000
UNSCORED_SHARE = 0.1  # players who registered but never finished a level: not on the board
REACHED_SPREAD_SECONDS = 30 * 24 * 3600
UNUSABLE_PASSWORD_PREFIX = "!"  # Django's marker for set_unusable_password()

COLUMNS = (
    "id",
    "password",
    "last_login",
    "is_superuser",
    "username",
    "first_name",
    "last_name",
    "is_staff",
    "is_active",
    "date_joined",
    "email",
    "current_score",
    "score_reached_at",
    "score_version",
    "updated_at",
    "token_epoch",
)


def username(i: int) -> str:
    return f"{USERNAME_PREFIX}{i:06d}"


def seed_players(*, players: int, seed: int = 42) -> int:
    """Add the missing bench players (COPY, one transaction). Returns how many were added."""
    from django.db import connection, transaction

    from scoreboard.progress import progress

    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM users WHERE username LIKE %s", [USERNAME_PREFIX + "%"])
        existing = int(cursor.fetchone()[0])
    if existing >= players:
        return 0
    rng = random.Random(seed * 1_000_003 + existing)
    now = dt.datetime.now(dt.UTC)
    copy_sql = f"COPY users ({', '.join(COLUMNS)}) FROM STDIN"
    with transaction.atomic(), connection.cursor() as cursor:
        raw = cursor.cursor  # the psycopg cursor under Django's wrapper
        with raw.copy(copy_sql) as copy, progress(total=players - existing, desc="seed", unit="players") as bar:
            for i in range(existing, players):
                bar.update()
                scored = rng.random() >= UNSCORED_SHARE
                score = min(int(rng.paretovariate(PARETO_ALPHA) * SCORE_SCALE), SCORE_CAP) if scored else 0
                reached = now - dt.timedelta(seconds=rng.randrange(REACHED_SPREAD_SECONDS)) if scored else None
                copy.write_row(
                    (
                        uuid.UUID(int=rng.getrandbits(128), version=4),
                        UNUSABLE_PASSWORD_PREFIX + f"{rng.getrandbits(128):032x}",
                        None,
                        False,
                        username(i),
                        "",
                        "",
                        False,
                        True,
                        now,
                        f"{username(i)}@{EMAIL_DOMAIN}",
                        score,
                        reached,
                        1 if scored else 0,
                        now,
                        0,
                    )
                )
        # The scored players' standing on the global board, as the score service would have left it.
        cursor.execute(
            "INSERT INTO boards (id, title, sort, operator, period, cron, tie_policy, action_types, keep_periods,"
            " is_active, metadata, created_at, updated_at) VALUES ('global', 'Global', 'desc', 'incr', 'all_time',"
            " '', 'first_reached', '[]', 52, true, '{}', now(), now()) ON CONFLICT (id) DO NOTHING"
        )
        cursor.execute(
            "INSERT INTO board_entries (board_id, period_key, user_id, score, sort_value, reached_at, version,"
            " updated_at) SELECT 'global', 'all', id, current_score, -current_score, score_reached_at,"
            " score_version, score_reached_at FROM users WHERE username LIKE %s AND score_reached_at IS NOT NULL"
            " ON CONFLICT (board_id, period_key, user_id) DO NOTHING",
            [USERNAME_PREFIX + "%"],
        )
        cursor.execute("ANALYZE users")
        cursor.execute("ANALYZE board_entries")
    return players - existing


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--players", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--no-index", action="store_true", help="skip rebuild_leaderboard")
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "scoreboard.settings")
    import django

    django.setup()
    from django.core.management import call_command

    started = time.perf_counter()
    added = seed_players(players=args.players, seed=args.seed)
    print(f"seed: {added} players added ({args.players} wanted) in {time.perf_counter() - started:.1f}s", flush=True)
    if not args.no_index:
        started = time.perf_counter()
        call_command("rebuild_leaderboard")
        print(f"seed: index rebuilt in {time.perf_counter() - started:.1f}s", flush=True)


if __name__ == "__main__":
    main()
