"""Shared fixtures. The suite runs against real PostgreSQL and Redis (DATABASE_URL / REDIS_URL);
tests marked ``embedded`` also run on the embedded default (SQLite, no Redis).

A missing service is a failure, never a skip: CI must not go green without them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis as redis_lib
from django.conf import settings
from rest_framework.test import APIClient

from accounts import services as account_services
from accounts.models import User
from scores import action_tokens
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


@pytest.fixture(autouse=True)
def _clean_redis_and_cache() -> Iterator[None]:
    """Each test starts with an empty Redis database and cache (rate limits, index, pre-filter)."""
    from django.core.cache import cache

    if settings.REDIS_URL:
        redis_lib.Redis.from_url(settings.REDIS_URL).flushdb()
    cache.clear()
    yield


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


def submit(client: APIClient, token: str, **body: Any) -> Any:
    return client.post("/v1/scores/update", {"action_token": token, **body}, format="json")
