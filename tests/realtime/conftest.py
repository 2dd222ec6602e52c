"""Helpers for the live-board tests: scoring a player the way the API does, from a worker thread."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterator
from itertools import count
from typing import Any

import pytest
from django.db import connection, connections

from accounts.models import User
from scores import action_tokens
from tests.conftest import access_token_for, in_worker_thread, submit
from tests.realtime.servers import Server, asgi_servers

# Consecutive actions of one player are spaced like real play, so the fraud engine's minimum
# play time never blocks a test update.
ACTION_SPACING_SECONDS = 5
_clock = count()


@pytest.fixture(scope="session", autouse=True)
def _no_lingering_sessions(django_db_setup: None, django_db_blocker: Any) -> Iterator[None]:
    """Worker threads of the ASGI code keep their own database connections; end them before the
    test database is dropped (PostgreSQL refuses to drop a database that is in use)."""
    yield
    if connection.vendor != "postgresql":
        return
    with django_db_blocker.unblock(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )


@pytest.fixture(scope="session")
def servers(django_db_setup: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Server]]:
    """Two uvicorn processes on this session's test database and Redis db (started on first use)."""
    with asgi_servers(2, tmp_path_factory.mktemp("asgi")) as running:
        yield running


@pytest.fixture(autouse=True)
def _fraud_blocking_off(settings: Any) -> None:
    settings.FRAUD_BLOCK_THRESHOLD = 2.0
    settings.RATE_LIMIT_ENABLED = False


def action_token(user: User, increment: int, action_type: str = "LEVEL_COMPLETION") -> str:
    now = time.time() - 250 + ACTION_SPACING_SECONDS * (next(_clock) % 50)
    return action_tokens.mint(
        user_id=str(user.pk), action_type=action_type, score_increment=increment, now=now
    ).action_token


def score_sync(user: User, increment: int) -> dict[str, object]:
    """POST /v1/scores/update through the test client; returns the response data."""
    from rest_framework.test import APIClient

    try:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {access_token_for(user)}")
        response = submit(client, action_token(user, increment))
        assert response.status_code == 200, response.json()
        return response.json()["data"]
    finally:
        connections.close_all()  # this worker thread's connection would outlive the test database


@pytest.fixture
def score() -> Callable[[User, int], Awaitable[dict[str, object]]]:
    """await score(user, increment): a real score update, run in a worker thread like a request."""
    return in_worker_thread(score_sync)


@pytest.fixture
def token_for() -> Callable[[User], Awaitable[str]]:
    """await token_for(user): an access token for ``user``, made in a worker thread."""
    return in_worker_thread(access_token_for)
