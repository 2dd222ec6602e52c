"""Fixtures for the reliability tests: a throwaway Redis the tests may stop, freeze and restart."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.test import override_settings

from scoreboard import ratelimit
from scoreboard import redis as scoreboard_redis
from scores import ranking
from tests.conftest import caches_on
from tests.reliability.throwaway import ThrowawayRedis, throwaway_redis
from tests.scores.conftest import unthrottled  # noqa: F401  (the score tests' switch, shared)


def forget_clients() -> None:
    scoreboard_redis._client.cache_clear()
    scoreboard_redis.registered_script.cache_clear()
    ranking._index.cache_clear()
    scoreboard_redis.reset_breakers()
    ratelimit.breaker.reset()
    ratelimit.local_counters.reset()


@pytest.fixture
def own_redis() -> Iterator[ThrowawayRedis]:
    """Every Redis client of the service (index, limits, windows, pre-filter, publish) on a throwaway server."""
    forget_clients()
    with throwaway_redis() as server, override_settings(REDIS_URL=server.url, CACHES=caches_on(server.url)):
        yield server
    forget_clients()


@pytest.fixture
def reconnects() -> Iterator[list[Any]]:
    """The reconnect events the hook delivers during the test."""
    events: list[Any] = []
    callback = scoreboard_redis.on_reconnect(events.append)
    yield events
    with scoreboard_redis._callbacks_lock:
        scoreboard_redis._callbacks.remove(callback)
