"""Fixtures of the scoreboard tests: a read replica (a second database) and its routing."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings
from django.db import connections
from django.test import override_settings

from scoreboard.replica import REPLICA, replica_database

ROUTED_MIDDLEWARE = [*settings.MIDDLEWARE, "scoreboard.replica.ReplicaReadMiddleware"]


def _psql(dsn: dict[str, Any], database: str, sql: str) -> None:
    subprocess.run(
        ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", *_conninfo(dsn), "-d", database, "-c", sql],
        check=True,
        capture_output=True,
    )


def _conninfo(dsn: dict[str, Any]) -> list[str]:
    return ["-h", str(dsn["HOST"] or "127.0.0.1"), "-p", str(dsn["PORT"] or 5432), "-U", str(dsn["USER"])]


@pytest.fixture(scope="session")
def replica_db(django_db_setup: None, django_db_blocker: Any) -> Iterator[str]:
    """A second database holding a copy of the (just migrated) test database, as alias ``replica``."""
    if not settings.IS_POSTGRES:
        pytest.fail("the replica tests need PostgreSQL: set DATABASE_URL (make test does)")
    for tool in ("pg_dump", "psql"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is not on PATH (PostgreSQL client tools)")
    primary = settings.DATABASES["default"]
    name = f"{primary['NAME']}_replica"
    with django_db_blocker.unblock():
        _psql(primary, "postgres", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        _psql(primary, "postgres", f'CREATE DATABASE "{name}"')
        dump = subprocess.run(
            ["pg_dump", "--no-owner", *_conninfo(primary), "-d", primary["NAME"]], check=True, capture_output=True
        )
        subprocess.run(
            ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", *_conninfo(primary), "-d", name],
            input=dump.stdout,
            check=True,
            capture_output=True,
        )
        url = f"postgres://{primary['USER']}@{primary['HOST'] or '127.0.0.1'}:{primary['PORT'] or 5432}/{name}"
        entry = replica_database(url, primary)
        entry.pop("TEST")
        # configure_settings already filled in the defaults of "default"; give the new alias the same.
        connections.settings[REPLICA] = {**primary, **entry}
        try:
            yield name
        finally:
            connections[REPLICA].close()
            close_pool = getattr(connections[REPLICA], "close_pool", None)  # PostgreSQL's, with a pool
            if close_pool is not None:
                close_pool()
            del connections[REPLICA]
            del connections.settings[REPLICA]
            _psql(primary, "postgres", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def routed(replica_db: str) -> Iterator[None]:
    with override_settings(DATABASE_ROUTERS=["scoreboard.replica.ReplicaRouter"], MIDDLEWARE=ROUTED_MIDDLEWARE):
        yield
