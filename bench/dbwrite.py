"""The database half of a score update on its own: the one-statement write, many connections.

    python -m bench.dbwrite --seconds 10 --clients 8 [--boards 3]   (DATABASE_URL must be PostgreSQL)

Runs ``scores.services.SUBMIT_SQL`` (lock the player, claim the nonce and action id, upsert
the player's entry on every board fed, add the increment, append the history row: one
statement, one commit, ``synchronous_commit`` as the server has it) from ``--clients``
processes, each with its own connection and its own players, so the figure is what PostgreSQL
does with our write, beside ``pgbench -N`` in the same run. It works in
a scratch database with our schema (copied with ``pg_dump --schema-only``) and drops it afterwards,
so the benchmark's players, index and board are not touched.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import multiprocessing
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlparse, urlunparse

SCRATCH = "sb_bench_dbwrite"
PLAYERS_PER_CLIENT = 200


def psql_conn(url: str) -> tuple[list[str], dict[str, str]]:
    """psql/pgbench connection flags and environment for a ``postgres://`` URL."""
    parsed = urlparse(url)
    env = dict(os.environ)
    if parsed.password:
        env["PGPASSWORD"] = parsed.password
    conn = ["-h", parsed.hostname or "127.0.0.1", "-p", str(parsed.port or 5432), "-U", parsed.username or "postgres"]
    return conn, env


def psql_run(url: str, argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Run a PostgreSQL client tool (``argv[0]``) against the server of ``url``; the flags go after it."""
    conn, env = psql_conn(url)
    return subprocess.run(  # noqa: S603
        [argv[0], *conn, *argv[1:]], env=env, capture_output=True, text=True, check=True, **kwargs
    )


@contextlib.contextmanager
def scratch_database(url: str, name: str) -> Iterator[str]:
    """A new, empty database ``name`` on the server of ``url`` (its URL), dropped afterwards."""
    psql_run(url, ["psql", "-d", "postgres", "-qc", f"DROP DATABASE IF EXISTS {name}"])
    psql_run(url, ["psql", "-d", "postgres", "-qc", f"CREATE DATABASE {name}"])
    try:
        yield _with_database(url, name)
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):
            psql_run(url, ["psql", "-d", "postgres", "-qc", f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"])


def _with_database(url: str, name: str) -> str:
    return urlunparse(urlparse(url)._replace(path=f"/{name}"))


# The benchmark's three-board scenario: global, a daily and a weekly board (all additive, high wins).
BOARDS = (("global", "all"), ("bench-daily", "2026-12-01"), ("bench-weekly", "2026-W49"))
# Rows one update writes besides its board entries: used_nonces, users, score_history.
ROWS_PER_UPDATE = 3


def _statement() -> str:
    """The production write statement (needs Django's settings only to import it)."""
    import django
    from django.apps import apps

    if not apps.ready:
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "scoreboard.settings")
        django.setup()
    from scores.services import SUBMIT_SQL

    return SUBMIT_SQL


def _client(url: str, statement: str, user_ids: list[str], seconds: float, start_at: float, boards: int) -> int:
    import psycopg

    done = 0
    with psycopg.connect(url, autocommit=True) as conn:
        while time.time() < start_at:
            time.sleep(0.001)
        deadline = start_at + seconds
        i = 0
        while time.time() < deadline:
            user_id = user_ids[i % len(user_ids)]
            i += 1
            now = dt.datetime.now(dt.UTC)
            nonce = uuid.uuid4().hex
            row = conn.execute(
                statement,
                {
                    "user_id": user_id,
                    # The session check on the locked row, as a player's own token makes it (epoch 0).
                    "epoch": 0,
                    "external": False,
                    "iat": None,
                    "nonce": nonce,
                    "action_id": "dbw-" + nonce,
                    "now": now,
                    "value": 10,
                    "global_inc": 10,
                    "b_ids": [b for b, _ in BOARDS[:boards]],
                    "b_periods": [p for _, p in BOARDS[:boards]],
                    "b_ops": ["incr"] * boards,
                    "b_high": [True] * boards,
                    "kind": "action",
                    "action_type": "LEVEL_COMPLETION",
                    "token_hash": nonce * 2,
                    "action_ts": now,
                    "ip": "127.0.0.1",
                    "user_agent": "bench.dbwrite",
                    "metadata": "{}",
                },
            ).fetchone()
            if row is None:  # refused (the statement's player checks): a rate of refusals is no figure
                raise RuntimeError(f"bench.dbwrite: the write statement refused player {user_id}")
            done += 1
    return done


def score_write_rate(
    database_url: str, *, seconds: float, clients: int, boards: int = 1, scratch: str = SCRATCH
) -> dict[str, Any]:
    """Score writes/s of ``clients`` connections for ``seconds`` in a scratch copy of the schema."""
    import psycopg

    statement = _statement()
    source = urlparse(database_url).path.lstrip("/")
    with scratch_database(database_url, scratch) as scratch_url:
        schema = psql_run(database_url, ["pg_dump", "--schema-only", "--no-owner", "-d", source]).stdout
        psql_run(database_url, ["psql", "-d", scratch, "-q", "-v", "ON_ERROR_STOP=1"], input=schema)
        players = [str(uuid.uuid4()) for _ in range(clients * PLAYERS_PER_CLIENT)]
        with psycopg.connect(scratch_url, autocommit=True) as db, db.cursor() as cur:
            now = dt.datetime.now(dt.UTC)
            with cur.copy(
                "COPY users (id, password, is_superuser, username, first_name, last_name, is_staff, is_active,"
                " date_joined, email, current_score, score_version, updated_at, token_epoch) FROM STDIN"
            ) as copy:
                for i, pk in enumerate(players):
                    copy.write_row(
                        (pk, "!", False, f"dbw{i}", "", "", False, True, now, f"dbw{i}@bench.invalid", 0, 0, now, 0)
                    )
            for board_id, _ in BOARDS[:boards]:
                cur.execute(
                    "INSERT INTO boards (id, title, sort, operator, period, cron, tie_policy, action_types,"
                    " keep_periods, is_active, metadata, created_at, updated_at)"
                    " VALUES (%s, %s, 'desc', 'incr', 'all_time', '', 'first_reached', '[]', 52, true, '{}',"
                    " now(), now())",
                    (board_id, board_id),
                )
            sync = cur.execute("SHOW synchronous_commit").fetchone()[0]  # type: ignore[index]
        start_at = time.time() + 1.0
        shares = [players[c * PLAYERS_PER_CLIENT : (c + 1) * PLAYERS_PER_CLIENT] for c in range(clients)]
        with multiprocessing.get_context("spawn").Pool(clients) as pool:
            counts = pool.starmap(
                _client,
                [(scratch_url, statement, share, seconds, start_at, boards) for share in shares],
            )
    total = sum(counts)
    return {
        "writes_per_s": round(total / seconds, 1),
        "row_writes_per_s": round(total * (ROWS_PER_UPDATE + boards) / seconds, 1),
        "boards": boards,
        "clients": clients,
        "seconds": seconds,
        "synchronous_commit": sync,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--boards", type=int, default=1, choices=range(1, len(BOARDS) + 1))
    args = parser.parse_args()
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith("postgres"):
        raise SystemExit("needs DATABASE_URL (PostgreSQL)")
    print(json.dumps(score_write_rate(url, seconds=args.seconds, clients=args.clients, boards=args.boards)))


if __name__ == "__main__":
    main()
