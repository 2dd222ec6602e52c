"""The rate-limit cache gives django-ratelimit the counts django-redis gave, in one round trip."""

from __future__ import annotations

import threading

import pytest
from django.core.cache import caches
from django.test import RequestFactory
from django_ratelimit.core import EXPIRATION_FUDGE, get_usage

from scoreboard import redis as scoreboard_redis

pytestmark = pytest.mark.redis


@pytest.fixture
def counters():
    from scoreboard.ratelimit_cache import RateLimitCache

    cache = caches["ratelimit"]
    assert isinstance(cache, RateLimitCache)
    return cache


class CountingRedis:
    """Counts commands sent to Redis by the process's client (the real client does the work)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        import redis.connection

        self.sent = 0
        original = redis.connection.AbstractConnection.send_packed_command

        def send(conn, command, check_health=True):
            self.sent += 1
            return original(conn, command, check_health)

        monkeypatch.setattr(redis.connection.AbstractConnection, "send_packed_command", send)


def usage(key: str, limit: int = 3) -> dict:
    request = RequestFactory().get("/")
    result = get_usage(request, group="test", key=lambda _g, _r: key, rate=(limit, 60), increment=True)
    assert result is not None
    return result


def test_counts_through_django_ratelimit_like_django_redis(counters, redis_client):
    hits = [usage("player-1", limit=5) for _ in range(6)]
    assert [h["count"] for h in hits] == [1, 2, 3, 4, 5, 6]
    assert [h["should_limit"] for h in hits] == [False] * 5 + [True]  # the 6th hit is over a limit of 5
    assert usage("player-2")["count"] == 1  # another key has its own counter
    keys = [k.decode() for k in redis_client.scan_iter(match="sb:{gate}:1:rl:*")]
    assert len(keys) == 2  # django-redis' key layout: KEY_PREFIX:version:key
    for key in keys:
        assert 60 < redis_client.ttl(key) <= 60 + EXPIRATION_FUDGE  # the window plus django-ratelimit's fudge


def test_one_round_trip_per_counter(counters, monkeypatch):
    usage("warm")  # loads the script once (SCRIPT LOAD), as every process does on its first hit
    sent = CountingRedis(monkeypatch)
    usage("player-1")
    usage("player-1")
    assert sent.sent == 2


def test_incr_of_a_missing_key_is_a_value_error_and_creates_nothing(counters, redis_client):
    with pytest.raises(ValueError):
        counters.incr("absent")
    assert redis_client.exists(counters.make_key("absent")) == 0


def test_add_without_incr_still_creates_the_key(counters):
    counters.add("lonely", 7, timeout=30)
    assert counters.get("lonely") == 7  # the pending add is applied before the read
    assert counters.incr("lonely") == 8


def test_add_then_incr_of_another_key_keeps_both(counters):
    counters.add("first", 1, timeout=30)
    with pytest.raises(ValueError):
        counters.incr("second")  # the pending add of "first" is applied, "second" does not exist
    assert counters.get("first") == 1


def test_concurrent_hits_are_counted_exactly(counters):
    seen: list[int] = []
    lock = threading.Lock()

    def hit() -> None:
        for _ in range(25):
            count = usage("shared", limit=10_000)["count"]
            with lock:
                seen.append(count)

    threads = [threading.Thread(target=hit) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(seen) == list(range(1, 201))


def test_redis_down_surfaces_as_a_redis_error():
    from scoreboard.ratelimit_cache import RateLimitCache

    dead = RateLimitCache("redis://127.0.0.1:1/0", {"KEY_PREFIX": "sb", "OPTIONS": {"SOCKET_TIMEOUT": 0.2}})
    dead.add("player-1", 1, timeout=60)
    with pytest.raises(scoreboard_redis.REDIS_ERRORS):
        dead.incr("player-1")


def test_a_score_updates_player_and_global_limits_share_one_round_trip(counters, monkeypatch, settings):
    from scoreboard import ratelimit

    settings.RATE_LIMIT_USER_PER_MINUTE, settings.RATE_LIMIT_GLOBAL_PER_MINUTE = 3, 100
    request = RequestFactory().post("/v1/scores/update")
    ratelimit.score_update_limits_check(request, user_id="warm-up")  # loads the script
    sent = CountingRedis(monkeypatch)
    for _ in range(3):
        ratelimit.score_update_limits_check(request, user_id="p1")
    assert sent.sent == 3  # one round trip per attempt for both limits
    # The counters are django-ratelimit's own: get_usage reads the same keys the chain wrote.
    player = get_usage(request, group="sb:user", key=lambda _g, _r: "p1", rate=(3, 60), increment=False)
    assert player is not None and player["count"] == 3


def test_attempts_over_the_player_limit_do_not_use_up_the_global_quota(counters, settings):
    from scoreboard import ratelimit
    from scoreboard.errors import TooManyRequests

    settings.RATE_LIMIT_USER_PER_MINUTE, settings.RATE_LIMIT_GLOBAL_PER_MINUTE = 2, 5
    request = RequestFactory().post("/v1/scores/update")
    for _ in range(2):
        ratelimit.score_update_limits_check(request, user_id="noisy")
    for _ in range(10):  # refused per player: the global counter is not touched
        with pytest.raises(TooManyRequests) as refused:
            ratelimit.score_update_limits_check(request, user_id="noisy")
        assert refused.value.code == "user_rate_limited"
        assert 1 <= refused.value.retry_after <= 60
    for who in ("a", "b", "c"):  # 2 + 3 = the global limit of 5
        ratelimit.score_update_limits_check(request, user_id=who)
    with pytest.raises(TooManyRequests) as refused:
        ratelimit.score_update_limits_check(request, user_id="d")
    assert refused.value.code == "global_rate_limited"
