"""Rate limits: per player (score updates), per IP (the whole API), global — 429 with Retry-After."""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator

import pytest
from django.test import override_settings
from prometheus_client import REGISTRY
from rest_framework.test import APIClient

from accounts import services as account_services
from scoreboard import ratelimit
from tests.conftest import caches_on, submit
from tests.fraud.conftest import NO_FRAUD_BLOCKING, error_of

# The simulated clock stands still unless a test moves it, so no run straddles a window boundary.
pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("clock")]

MINUTE = 60


def random_ip() -> str:
    return f"{random.randint(1, 223)}.{random.randint(0, 255)}.{random.randint(0, 255)}.{random.randint(1, 254)}"


def assert_rate_limited(response, code: str) -> None:
    assert response.status_code == 429, response.content
    error = error_of(response)
    assert error["code"] == code
    assert 1 <= int(response["Retry-After"]) <= MINUTE
    assert error["details"]["window_seconds"] == MINUTE


# --- per player ---------------------------------------------------------------------------------
@pytest.mark.embedded
@override_settings(**NO_FRAUD_BLOCKING)
def test_the_11th_update_in_a_minute_is_429_with_retry_after(player, client_for, mint):
    triggers_before = REGISTRY.get_sample_value("scoreboard_rate_limit_triggers_total", {"scope": "user"}) or 0
    client = client_for(player)
    statuses = [submit(client, mint(player, increment=5)).status_code for _ in range(10)]
    assert statuses == [200] * 10

    eleventh = submit(client, mint(player, increment=5))
    assert_rate_limited(eleventh, "user_rate_limited")
    assert error_of(eleventh)["details"]["limit"] == 10
    player.refresh_from_db()
    assert player.current_score == 50
    assert REGISTRY.get_sample_value("scoreboard_rate_limit_triggers_total", {"scope": "user"}) == triggers_before + 1


@pytest.mark.embedded
@override_settings(**NO_FRAUD_BLOCKING)
def test_the_player_limit_counts_attempts_that_passed_authentication(player, client_for, mint, api_client):
    # Unauthenticated attempts do not use up the player's quota (they count per IP only)...
    for _ in range(12):
        assert submit(api_client, mint(player)).status_code == 401
    client = client_for(player)
    # ...while authenticated attempts count even when the body or token is refused afterwards.
    assert [submit(client, "x" * 5000).status_code for _ in range(5)] == [400] * 5
    assert [submit(client, "not-a-token").status_code for _ in range(5)] == [401] * 5
    assert_rate_limited(submit(client, mint(player)), "user_rate_limited")


@pytest.mark.embedded
@override_settings(**NO_FRAUD_BLOCKING)
def test_players_have_separate_quotas(make_player, client_for, mint):
    first, second = make_player(), make_player()
    for _ in range(10):
        assert submit(client_for(first), mint(first)).status_code == 200
    assert submit(client_for(first), mint(first)).status_code == 429
    assert submit(client_for(second), mint(second)).status_code == 200


@pytest.mark.embedded
@override_settings(**NO_FRAUD_BLOCKING)
def test_the_limit_resets_after_the_window(player, client_for, mint, clock):
    client = client_for(player)
    for _ in range(10):
        assert submit(client, mint(player)).status_code == 200
    refused = submit(client, mint(player))
    assert refused.status_code == 429

    clock.advance(int(refused["Retry-After"]))
    assert submit(client, mint(player)).status_code == 200


# --- global -------------------------------------------------------------------------------------
@pytest.mark.embedded
@override_settings(RATE_LIMIT_GLOBAL_PER_MINUTE=5, **NO_FRAUD_BLOCKING)
def test_the_global_limit_caps_all_players_together(make_player, client_for, mint):
    players = [make_player() for _ in range(6)]
    statuses = [submit(client_for(p), mint(p)).status_code for p in players[:5]]
    assert statuses == [200] * 5
    assert_rate_limited(submit(client_for(players[5]), mint(players[5])), "global_rate_limited")


# --- per IP -------------------------------------------------------------------------------------
@pytest.mark.embedded
@override_settings(RATE_LIMIT_IP_PER_MINUTE=20)
def test_per_ip_limit_holds_with_a_random_x_forwarded_for_on_every_request(api_client):
    """No trusted proxy is configured, so the header is ignored: it cannot buy a new quota."""
    statuses = [api_client.get("/v1/leaderboard", HTTP_X_FORWARDED_FOR=random_ip()).status_code for _ in range(21)]
    assert statuses == [200] * 20 + [429]
    assert_rate_limited(api_client.get("/v1/leaderboard", HTTP_X_FORWARDED_FOR=random_ip()), "ip_rate_limited")


@pytest.mark.embedded
@override_settings(RATE_LIMIT_IP_PER_MINUTE=20, TRUSTED_PROXIES=["127.0.0.1"])
def test_behind_a_trusted_proxy_a_spoofed_hop_does_not_buy_a_quota(api_client):
    """The proxy appends the real client; whatever the client wrote before it is not believed."""
    statuses = [
        api_client.get("/v1/leaderboard", HTTP_X_FORWARDED_FOR=f"{random_ip()}, 203.0.113.7").status_code
        for _ in range(21)
    ]
    assert statuses == [200] * 20 + [429]
    # Another client behind the same proxy has its own quota.
    assert api_client.get("/v1/leaderboard", HTTP_X_FORWARDED_FOR="198.51.100.9").status_code == 200


@pytest.mark.embedded
@override_settings(RATE_LIMIT_IP_PER_MINUTE=3)
def test_a_request_without_a_client_address_is_served_and_the_operator_is_told_once(api_client, caplog, monkeypatch):
    """gunicorn on a unix socket passes no REMOTE_ADDR: nothing to count per IP, and a silent gap
    in the limits would go unnoticed, so the first such request logs a security warning."""
    monkeypatch.setattr(ratelimit, "_warned_no_address", threading.Event())
    with caplog.at_level("WARNING", logger="scoreboard.security"):
        statuses = [api_client.get("/v1/leaderboard", REMOTE_ADDR="").status_code for _ in range(5)]
    assert statuses == [200] * 5
    warnings = [r for r in caplog.records if "without a client address" in r.getMessage()]
    assert len(warnings) == 1


@pytest.mark.embedded
@override_settings(RATE_LIMIT_IP_PER_MINUTE=20)
def test_rejected_requests_count_toward_the_ip_limit(api_client):
    responses = [
        api_client.get("/v1/no-such-route"),
        api_client.post("/v1/scores/update", "{not json", content_type="application/json"),
        api_client.post("/v1/scores/update", "x", content_type="text/plain"),
        api_client.delete("/v1/leaderboard"),
        api_client.post("/v1/auth/login", {"username": "nobody", "password": "wrong"}, format="json"),
    ]
    assert [r.status_code for r in responses] == [404, 401, 401, 405, 401]
    for _ in range(15):
        api_client.get("/v1/no-such-route")
    assert_rate_limited(api_client.get("/v1/leaderboard"), "ip_rate_limited")


@pytest.mark.embedded
@override_settings(RATE_LIMIT_IP_PER_MINUTE=3, RATE_LIMIT_GAME_SERVER_PER_MINUTE=6)
def test_game_servers_minting_tokens_have_their_own_budget(api_client, player):
    key = account_services.game_server_key_create(name="arcade")[1]
    body = {"user_id": str(player.pk), "action_type": "LEVEL_COMPLETION", "score_increment": 10}
    minted = [api_client.post("/v1/actions", body, format="json", HTTP_X_API_KEY=key).status_code for _ in range(6)]
    assert minted == [201] * 6
    assert_rate_limited(
        api_client.post("/v1/actions", body, format="json", HTTP_X_API_KEY=key), "game_server_rate_limited"
    )
    # The ordinary per-IP budget is separate.
    assert api_client.get("/v1/leaderboard").status_code == 200


@pytest.mark.embedded
@override_settings(RATE_LIMIT_IP_PER_MINUTE=3, RATE_LIMIT_GAME_SERVER_PER_MINUTE=1000)
def test_only_a_verified_key_buys_the_game_server_budget(api_client, player):
    """Any X-API-Key header used to buy the large budget: a forged one now counts as an ordinary client."""
    body = {"user_id": str(player.pk), "action_type": "LEVEL_COMPLETION", "score_increment": 10}
    forged = [
        api_client.post("/v1/actions", body, format="json", HTTP_X_API_KEY=key).status_code
        for key in ("sbk_x_y", "sbk_0000_guess", "anything")
    ]
    assert forged == [401, 401, 401]
    assert_rate_limited(
        api_client.post("/v1/actions", body, format="json", HTTP_X_API_KEY="sbk_x_z"), "ip_rate_limited"
    )
    key = account_services.game_server_key_create(name="arcade")[1]
    assert api_client.post("/v1/actions", body, format="json", HTTP_X_API_KEY=key).status_code == 201


@pytest.mark.embedded
@override_settings(RATE_LIMIT_IP_PER_MINUTE=3)
def test_the_ip_limit_covers_the_api_only(api_client):
    for _ in range(4):
        api_client.get("/v1/leaderboard")
    assert api_client.get("/v1/leaderboard").status_code == 429
    assert api_client.get("/admin/login/").status_code == 200


@pytest.mark.embedded
@override_settings(RATE_LIMIT_IP_PER_MINUTE=3)
def test_the_ip_limit_resets_after_the_window(api_client, clock):
    for _ in range(3):
        assert api_client.get("/v1/leaderboard").status_code == 200
    refused = api_client.get("/v1/leaderboard")
    assert refused.status_code == 429
    clock.advance(int(refused["Retry-After"]))
    assert api_client.get("/v1/leaderboard").status_code == 200


@pytest.mark.embedded
@override_settings(RATE_LIMIT_ENABLED=False, **NO_FRAUD_BLOCKING)
def test_limits_can_be_switched_off(player, client_for, mint):
    client = client_for(player)
    assert [submit(client, mint(player)).status_code for _ in range(12)] == [200] * 12


def test_ipv6_clients_are_counted_per_64():
    assert ratelimit.ip_key("2001:db8:1:2:aaaa::1") == ratelimit.ip_key("2001:db8:1:2:bbbb::2") == "2001:db8:1:2::/64"
    assert ratelimit.ip_key("2001:db8:1:3::1") != ratelimit.ip_key("2001:db8:1:2::1")
    assert ratelimit.ip_key("203.0.113.7") == "203.0.113.7"


# --- Redis (the counter store) down ------------------------------------------------------------
DEAD_CACHE = caches_on("redis://127.0.0.1:1/0")  # nothing listens on port 1: refused at once


@pytest.fixture
def counters_down() -> Iterator[None]:
    with override_settings(CACHES=DEAD_CACHE, **NO_FRAUD_BLOCKING):
        yield


@pytest.fixture(autouse=True)
def _fresh_local_counters() -> Iterator[None]:
    ratelimit.local_counters.reset()
    ratelimit.breaker.reset()
    yield
    ratelimit.local_counters.reset()
    ratelimit.breaker.reset()


@pytest.mark.redis
def test_by_default_updates_commit_under_per_process_limits_while_the_counters_are_down(
    player, client_for, mint, counters_down
):
    client = client_for(player)
    statuses = [submit(client, mint(player, increment=10)).status_code for _ in range(11)]
    assert statuses[:10] == [200] * 10  # DESIGN: with Redis down the update still commits
    assert statuses[10] == 429  # ...and the player is still limited, by this process's counters
    player.refresh_from_db()
    assert player.current_score == 100
    assert APIClient().get("/v1/leaderboard").status_code == 200


@pytest.mark.redis
@override_settings(RATE_LIMIT_REDIS_DOWN="closed")
def test_score_updates_fail_closed_when_the_counters_are_down(player, client_for, mint, counters_down):
    response = submit(client_for(player), mint(player))
    assert response.status_code == 503
    assert error_of(response)["code"] == "rate_limiter_unavailable"
    assert int(response["Retry-After"]) >= 1
    player.refresh_from_db()
    assert player.current_score == 0
    # Reads keep working: the per-IP limit fails open.
    assert APIClient().get("/v1/leaderboard").status_code == 200


@pytest.mark.redis
@override_settings(RATE_LIMIT_REDIS_DOWN="open")
def test_failing_open_is_a_setting(player, client_for, mint, counters_down):
    assert submit(client_for(player), mint(player)).status_code == 200
