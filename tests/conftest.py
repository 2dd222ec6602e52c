"""Shared fixtures. The suite runs against real PostgreSQL and Redis (DATABASE_URL / REDIS_URL);
tests marked ``embedded`` also run on the embedded default (SQLite, no Redis).

A missing service is a failure, never a skip: CI must not go green without them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis as redis_lib
from django.conf import settings
from rest_framework.test import APIClient

from accounts import services as account_services
from accounts.models import User
from scores import action_tokens, board_services, registry
from scores import services as score_services
from tests.factories import PlayerFactory


@pytest.fixture(scope="session", autouse=True)
def _services_reachable() -> None:
    """Fail the whole run at once when a configured service is down."""
    if settings.REDIS_URL:
        try:
            redis_lib.Redis.from_url(settings.REDIS_URL, socket_timeout=2).ping()
        except redis_lib.RedisError as exc:
            pytest.exit(f"REDIS_URL={settings.REDIS_URL} is unreachable: {exc}", returncode=3)


@pytest.fixture(autouse=True)
def _require_marked_services(request: pytest.FixtureRequest) -> None:
    if request.node.get_closest_marker("redis") and not settings.REDIS_URL:
        pytest.fail("this test needs Redis: set REDIS_URL (make test does)")
    if request.node.get_closest_marker("postgres") and not settings.IS_POSTGRES:
        pytest.fail("this test needs PostgreSQL: set DATABASE_URL (make test does)")


# The suite empties its Redis database before every test. It only does so to a database that is
# marked as a test database (this key, which the suite sets on a database it found empty), so that
# `make test` with REDIS_URL pointing at data somebody keeps refuses instead of wiping it.
TEST_DATABASE_MARKER = "sb:test-database"


@pytest.fixture(scope="session")
def _redis_is_a_test_database() -> None:
    if not settings.REDIS_URL:
        return
    client = redis_lib.Redis.from_url(settings.REDIS_URL)
    if client.exists(TEST_DATABASE_MARKER):
        return
    keys = client.dbsize()
    if keys:
        db = client.connection_pool.connection_kwargs.get("db", 0)
        pytest.exit(
            f"REDIS_URL={settings.REDIS_URL} holds {keys} keys and is not marked as a test database: "
            f"the suite empties its Redis database before every test, so it refuses to FLUSHDB this one. "
            f"Point REDIS_URL at a database of its own (make test's default is db 15), or, if this one "
            f"is a throwaway test database: redis-cli -n {db} set {TEST_DATABASE_MARKER} 1",
            returncode=3,
        )
    client.set(TEST_DATABASE_MARKER, "1")


def redis_flush_test_database() -> None:
    """FLUSHDB the suite's (marked) Redis database, keeping the mark."""
    client = redis_lib.Redis.from_url(settings.REDIS_URL)
    with client.pipeline() as pipe:
        pipe.flushdb()
        pipe.set(TEST_DATABASE_MARKER, "1")
        pipe.execute()


@pytest.fixture(autouse=True)
def _clean_redis_and_cache(_redis_is_a_test_database: None) -> Iterator[None]:
    """Each test starts with an empty Redis database and cache (rate limits, index, pre-filter)."""
    from django.core.cache import cache

    cache.clear()  # first: django-redis empties the whole database here, the mark included
    if settings.REDIS_URL:
        redis_flush_test_database()
    # Each test's database starts from the migrations' boards (only "global"); forget this
    # process's copy of the boards table and of the periods it has seen.
    registry.boards_cache_clear()
    score_services.known_periods_clear()
    yield
    registry.boards_cache_clear()
    score_services.known_periods_clear()


def caches_on(redis_url: str) -> dict[str, dict[str, Any]]:
    """``CACHES`` as settings.py builds it, on another Redis (a dead one in the outage tests)."""
    return {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": redis_url,
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 0.2, "SOCKET_TIMEOUT": 0.2},
        },
        "ratelimit": {
            "BACKEND": "scoreboard.ratelimit_cache.RateLimitCache",
            "LOCATION": redis_url,
            "KEY_PREFIX": "sb",
            "OPTIONS": {"SOCKET_TIMEOUT": 0.2},
        },
    }


@pytest.fixture
def redis_client() -> redis_lib.Redis:
    if not settings.REDIS_URL:
        pytest.fail("this test needs Redis: set REDIS_URL")
    return redis_lib.Redis.from_url(settings.REDIS_URL)


@pytest.fixture
def player(db: None) -> User:
    return PlayerFactory.create()


@pytest.fixture
def make_player(db: None) -> Callable[..., User]:
    def make(**kwargs: Any) -> User:
        return PlayerFactory.create(**kwargs)

    return make


@pytest.fixture
def api_client() -> APIClient:
    return APIClient()


def access_token_for(user: User) -> str:
    return account_services.player_tokens_issue(user=user).access


@pytest.fixture
def auth_client(player: User) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {access_token_for(player)}")
    return client


@pytest.fixture
def client_for() -> Callable[[User], APIClient]:
    def make(user: User) -> APIClient:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {access_token_for(user)}")
        return client

    return make


@pytest.fixture
def mint() -> Callable[..., str]:
    """mint(user, increment=100, action_type="LEVEL_COMPLETION", **kw) -> a signed action token."""

    def make(user: User, increment: int = 100, action_type: str = "LEVEL_COMPLETION", **kwargs: Any) -> str:
        return action_tokens.mint(
            user_id=str(user.pk), action_type=action_type, score_increment=increment, **kwargs
        ).action_token

    return make


def in_worker_thread(func: Callable[..., Any]) -> Callable[..., Any]:
    """``sync_to_async(func, thread_sensitive=False)`` that gives the worker thread's database
    connection back when ``func`` returns. Without that, every such thread keeps a connection of the
    process's pool checked out after its test, and later tests starve for connections."""
    from asgiref.sync import sync_to_async
    from django.db import connections

    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        finally:
            connections.close_all()

    return sync_to_async(run, thread_sensitive=False)


def submit(client: APIClient, token: str, **body: Any) -> Any:
    return client.post("/v1/scores/update", {"action_token": token, **body}, format="json")


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[Any]:
    """A real 3-node Redis Cluster for the session (tests/redis_cluster.py); fails when it cannot start."""
    from tests.redis_cluster import ClusterStartError, local_cluster

    try:
        with local_cluster() as cluster:
            yield cluster
    except ClusterStartError as exc:
        pytest.fail(f"the local Redis Cluster did not start: {exc}")


def use_redis(settings: Any, url: str) -> None:
    """Point every Redis caller at ``url`` (a cluster URL or one server), as settings.py would."""
    from realtime import hub
    from scoreboard import redis as sb_redis
    from scoreboard.settings import redis_caches
    from scores import ranking

    settings.REDIS_URL = url
    settings.CACHES = redis_caches(url)
    sb_redis._client.cache_clear()
    ranking._index.cache_clear()
    hub._channels.cache_clear()
    sb_redis.reset_breakers()


@pytest.fixture
def standalone_url() -> str:
    return str(settings.REDIS_URL)


@pytest.fixture
def on_cluster(redis_cluster: Any, settings: Any, standalone_url: str) -> Iterator[Any]:
    """This test's Redis callers all use the session's cluster (emptied first), as with REDIS_CLUSTER_URL."""
    redis_cluster.flush()
    use_redis(settings, redis_cluster.url)
    try:
        yield redis_cluster
    finally:
        use_redis(settings, standalone_url)


@pytest.fixture
def redis_commands(monkeypatch: pytest.MonkeyPatch) -> Callable[[], list[bytes]]:
    """``record()`` starts recording every command this process sends to Redis (the first 40 bytes
    of each packed command, a pipeline counting once) and returns the list it fills."""

    def record() -> list[bytes]:
        sent: list[bytes] = []
        send = redis_lib.connection.AbstractConnection.send_packed_command

        def counted(conn: Any, command: Any, check_health: bool = True) -> Any:
            sent.append(bytes(command[0] if isinstance(command, list) else command)[:40])
            return send(conn, command, check_health)

        monkeypatch.setattr(redis_lib.connection.AbstractConnection, "send_packed_command", counted)
        return sent

    return record


@pytest.fixture
def three_boards(db: None) -> None:
    """A daily and a weekly board beside the global one: an update feeds three boards."""
    for board_id, period in (("day", "daily"), ("week", "weekly")):
        board_services.board_create(board_id=board_id, title=board_id, period=period)
    registry.boards_cache_clear()


async def eventually(condition: Callable[[], bool], seconds: float = 10.0) -> bool:
    """Poll ``condition`` until it holds (True) or ``seconds`` pass (its last value)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        await asyncio.sleep(0.02)
    return condition()
