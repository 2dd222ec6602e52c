"""Statements on the score-update path, run as PostgreSQL prepared statements.

Django binds parameters on the client and never prepares (so that connection poolers such as
PgBouncer in transaction mode work), which makes PostgreSQL parse and plan every statement again.
For the write every score update runs, planning was about 40% of the statement's own time
(EXPLAIN ANALYZE: 0.16-0.19 ms planning against 0.22-0.29 ms execution). The few statements that run
on every update go through :func:`fetchone` instead: bound on the server and prepared once per
connection (psycopg keeps the prepared statements of each connection). Measured with
``bench/profile_update.py``: PostgreSQL's own CPU per update 0.65 ms -> 0.33-0.39 ms.

``DB_PREPARED_STATEMENTS=false`` runs them through Django's cursor like everything else (needed
behind a pooler that cannot carry prepared statements, e.g. PgBouncer before 1.21 in transaction
mode). Other databases (the embedded SQLite) always use Django's cursor.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import psycopg
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connection, connections


def prepared() -> bool:
    return connection.vendor == "postgresql" and settings.DB_PREPARED_STATEMENTS


def fetchone(sql: str, params: Sequence[Any] | Mapping[str, Any]) -> tuple[Any, ...] | None:
    """Execute ``sql`` (``%s`` / ``%(name)s`` placeholders) and return its first row, or None.

    Inside Django's connection and transaction (autocommit or the caller's ``atomic`` block), with
    database errors translated to Django's (``django.db.IntegrityError`` and so on) as its own
    cursor does.
    """
    if not prepared():
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            row = cursor.fetchone()
        return None if row is None else tuple(row)
    conn = connections[DEFAULT_DB_ALIAS]  # once: every attribute of ``connection`` looks it up again
    conn.ensure_connection()
    conn.validate_no_broken_transaction()
    with conn.wrap_database_errors, psycopg.Cursor(conn.connection) as cursor:
        cursor.execute(sql, params, prepare=True)
        return cursor.fetchone()


def fetchall(sql: str, params: Sequence[Any] | Mapping[str, Any]) -> list[tuple[Any, ...]]:
    """Like :func:`fetchone`, for a statement that returns several rows (one per board written)."""
    if not prepared():
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return [tuple(row) for row in cursor.fetchall()]
    conn = connections[DEFAULT_DB_ALIAS]
    conn.ensure_connection()
    conn.validate_no_broken_transaction()
    with conn.wrap_database_errors, psycopg.Cursor(conn.connection) as cursor:
        cursor.execute(sql, params, prepare=True)
        return cursor.fetchall()
