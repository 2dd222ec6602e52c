"""scoreboard/redis.py: short timeouts, no retries, one circuit breaker per Redis server, and the
reconnect hook, against a real redis-server that the tests stop, freeze (SIGSTOP) and restart."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator

import pytest
import redis

from scoreboard import redis as scoreboard_redis
from tests.reliability.throwaway import ThrowawayRedis, throwaway_redis

pytestmark = [pytest.mark.redis]

TIMEOUT = 0.25


@pytest.fixture
def server() -> Iterator[ThrowawayRedis]:
    scoreboard_redis.reset_breakers()
    with throwaway_redis() as server:
        yield server
    scoreboard_redis.reset_breakers()


def wait_for(condition: Callable[[], bool], seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def outcomes(client: redis.Redis, calls: int) -> list[str]:
    """What each of ``calls`` commands did: "ok", "timeout"/"refused" (sent and failed) or "not sent"."""
    seen = []
    for _ in range(calls):
        try:
            client.incr("counter")
        except scoreboard_redis.RedisUnavailable:
            seen.append("not sent")
        except redis.TimeoutError:
            seen.append("timeout")
        except redis.ConnectionError:
            seen.append("refused")
        else:
            seen.append("ok")
    return seen


def breaker(server: ThrowawayRedis) -> scoreboard_redis.CircuitBreaker:
    return scoreboard_redis.breaker_for(f"127.0.0.1:{server.port}")


def test_a_frozen_redis_costs_at_most_the_threshold_in_timeouts_then_nothing_is_sent(server, reconnects):
    client = scoreboard_redis.client_for(server.url, TIMEOUT)
    assert client.incr("counter") == 1
    server.freeze()
    try:
        seen = outcomes(client, 30)
    finally:
        server.thaw()

    # One attempt per command (no retries), the circuit opens after REDIS_BREAKER_FAILURES failures,
    # and every later command fails at once without waiting on the frozen socket.
    failures = [s for s in seen if s != "not sent"]
    assert failures == ["timeout"] * len(failures)
    assert 1 <= len(failures) <= 2
    assert seen[len(failures) :] == ["not sent"] * (30 - len(failures))
    assert breaker(server).is_open

    # Thawed: the probe thread (not a request) closes the circuit and tells the hook it kept its data.
    assert wait_for(lambda: not breaker(server).is_open)
    assert client.get(scoreboard_redis.SENTINEL_KEY) is not None
    assert wait_for(lambda: any(e.outage_started_at is not None for e in reconnects))
    event = next(e for e in reconnects if e.outage_started_at is not None)
    assert (event.server, event.db, event.empty) == (f"127.0.0.1:{server.port}", 0, False)


def test_a_stopped_redis_opens_the_circuit_and_an_empty_restart_is_reported(server, reconnects):
    client = scoreboard_redis.client_for(server.url, TIMEOUT)
    client.set("kept", "1")
    assert wait_for(lambda: any(e.empty and e.outage_started_at is None for e in reconnects))  # first use
    reconnects.clear()
    process_port = server.port
    server.stop()

    seen = outcomes(client, 10)
    assert "not sent" in seen and "ok" not in seen
    assert breaker(server).is_open

    server.port = process_port
    server.start()  # same port, no persistence: Redis is back, empty
    assert wait_for(lambda: any(e.outage_started_at is not None for e in reconnects))
    event = next(e for e in reconnects if e.outage_started_at is not None)
    assert event.empty is True
    assert client.get("kept") is None
    assert client.incr("counter") == 1


def test_an_empty_restart_between_two_commands_is_reported_without_an_outage(server, reconnects):
    client = scoreboard_redis.client_for(server.url, TIMEOUT)
    client.set("kept", "1")
    assert wait_for(lambda: len(reconnects) == 1)
    port = server.port
    server.stop()
    server.port = port
    server.start()

    client.incr("counter")  # redis-py replaces the dead pooled connection; the new one finds no sentinel

    assert wait_for(lambda: len(reconnects) == 2)
    assert reconnects[1].empty is True
    assert not breaker(server).is_open


def test_an_error_reply_is_reported_not_an_outage(server, caplog):
    client = scoreboard_redis.client_for(server.url, TIMEOUT)
    client.set("text", "not a number")
    with caplog.at_level(logging.ERROR, logger="scoreboard.redis"):
        for _ in range(5):
            with pytest.raises(redis.ResponseError):
                client.incr("text")  # WRONGTYPE-like error reply: a bug in the caller, not Redis down
            with pytest.raises(redis.ResponseError):
                scoreboard_redis.registered_script(client, "return redis.call('no-such-command')")()

    assert not breaker(server).is_open
    assert client.incr("counter") == 1
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 10 and all(r.exc_info for r in errors)
    # Callers still catch it (a committed update never turns into a 500 for derived data) ...
    assert issubclass(redis.ResponseError, scoreboard_redis.REDIS_ERRORS)
    # ... but code that retries on outages can tell them apart.
    assert not issubclass(redis.ResponseError, scoreboard_redis.REDIS_OUTAGE_ERRORS)


def test_a_failing_callback_never_reaches_redis_callers(server, reconnects, caplog):
    def broken(event: scoreboard_redis.Reconnected) -> None:
        raise RuntimeError("boom")

    scoreboard_redis.on_reconnect(broken)
    try:
        client = scoreboard_redis.client_for(server.url, TIMEOUT)
        with caplog.at_level(logging.ERROR, logger="scoreboard.redis"):
            assert client.incr("counter") == 1
            assert wait_for(lambda: len(reconnects) == 1)
            assert wait_for(lambda: any("callback" in r.getMessage() for r in caplog.records))
    finally:
        with scoreboard_redis._callbacks_lock:
            scoreboard_redis._callbacks.remove(broken)
