"""The one Redis client of the process (a pooled connection), or None in the embedded default."""

from __future__ import annotations

import functools
from typing import Any

import redis
from django.conf import settings

# Errors that mean "Redis is not usable right now": callers degrade to PostgreSQL.
REDIS_ERRORS: tuple[type[Exception], ...] = (redis.ConnectionError, redis.TimeoutError, redis.ResponseError, OSError)


@functools.cache
def _client(url: str, timeout: float) -> redis.Redis:
    return redis.Redis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        health_check_interval=30,
        decode_responses=False,
    )


@functools.cache
def registered_script(client: redis.Redis, source: str) -> Any:
    """``client.register_script(source)``, once per client and script (EVALSHA, loaded on first use).

    Keyed by the client object itself, not ``id()``: a replaced client (tests drop the cached one)
    never gets a script bound to its predecessor.
    """
    return client.register_script(source)


def client_for(url: str, timeout: float) -> redis.Redis:
    """The process's pooled client for ``url`` (one per URL and timeout)."""
    return _client(url, timeout)


def get_redis() -> redis.Redis | None:
    if not settings.REDIS_URL:
        return None
    return _client(settings.REDIS_URL, settings.REDIS_SOCKET_TIMEOUT)
