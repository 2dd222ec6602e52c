"""The fraud engine inside the score update: blocked -> fraud log + 429, flagged -> applied and logged."""

from __future__ import annotations

import json

import pytest
from django.test import override_settings

from fraud import rules, windows
from fraud import services as fraud_services
from fraud.models import FraudLog
from scoreboard import redis as scoreboard_redis
from scores import ranking
from scores.action_tokens import verify
from scores.models import ScoreHistory
from scores.services import RequestContext
from tests.conftest import submit
from tests.fraud.conftest import error_of

pytestmark = [pytest.mark.django_db]

BOT_UA = "bot-loop/1.0"


def post_update(client, token: str, **request_meta: str):
    """Like tests.conftest.submit, with request headers/META (user agent, address)."""
    return client.post("/v1/scores/update", {"action_token": token}, format="json", **request_meta)


def test_a_bot_loop_is_blocked_with_a_fraud_log_and_429(player, client_for, mint, clock):
    """Maximal increments, one second apart: quarantined at once (hidden from the boards), blocked from
    the 5th (the rules that may refuse an update: jump, min play time, rhythm)."""
    client = client_for(player)
    responses = []
    for _ in range(6):
        clock.advance(1)
        responses.append(post_update(client, mint(player, increment=1000), HTTP_USER_AGENT=BOT_UA))
    statuses = [r.status_code for r in responses]
    assert statuses == [200, 200, 200, 200, 429, 429], statuses

    blocked = responses[4]
    error = error_of(blocked)
    assert error["code"] == "fraud_blocked"
    assert 1 <= int(blocked["Retry-After"]) <= 60
    log = FraudLog.objects.get(pk=error["details"]["reference"])
    assert log.decision == FraudLog.Decision.BLOCKED
    assert log.status == FraudLog.Status.OPEN
    assert log.user_id == player.pk
    assert float(log.risk_score) >= 0.8
    assert {"increment_persistence", "min_play_time", "impossible_score_jump", "timing_regularity"} <= set(
        log.rule_names
    )
    assert log.ip_address == "127.0.0.1"
    assert log.user_agent == BOT_UA
    assert log.score_history is None
    assert all(r["reason"] for r in log.metadata["rules"])

    player.refresh_from_db()
    assert player.current_score == 4000  # blocked attempts were not applied
    assert ScoreHistory.objects.filter(user=player).count() == 4
    assert player.is_quarantined  # the 2nd (applied) was already enough to hide the player
    assert FraudLog.objects.filter(user=player, decision=FraudLog.Decision.QUARANTINED).count() == 3


@pytest.mark.embedded
def test_a_replay_is_409_even_from_a_player_who_is_being_blocked(player, client_for, mint, clock):
    """Replay is checked before fraud (DESIGN), also without the Redis pre-filter (embedded default)."""
    client = client_for(player)
    tokens = []
    for _ in range(6):
        clock.advance(1)
        tokens.append(mint(player, increment=1000))
        submit(client, tokens[-1])
    assert submit(client, mint(player, increment=1000)).status_code == 429  # still being blocked

    replay = submit(client, tokens[0])

    assert replay.status_code == 409
    assert error_of(replay)["code"] == "action_token_replayed"
    assert error_of(replay)["details"]["new_score"] == 1000


def test_flagged_updates_are_applied_and_logged_against_their_history_row(player, client_for, mint, clock):
    client = client_for(player)
    clock.advance(1)
    assert submit(client, mint(player, increment=1000)).status_code == 200  # jump alone: 0.3, not flagged
    clock.advance(1)
    # + two levels 1 s apart (0.23) + an opening of two increments at the ceiling, where the prior
    # puts the ceiling in the top 2.4% (opening_run: 1 in 1,700 sessions, 0.63): quarantined; the
    # blocking rules sum to 0.53.
    second = submit(client, mint(player, increment=1000))

    assert second.status_code == 200
    log = FraudLog.objects.get(user=player)
    assert log.decision == FraudLog.Decision.QUARANTINED
    assert float(log.risk_score) >= 0.65
    blocking = sum(r["weighted"] for r in log.metadata["rules"] if r["rule"] not in rules.QUARANTINE_ONLY)
    assert blocking < 0.8
    assert set(log.rule_names) == {"impossible_score_jump", "min_play_time", "opening_run"}
    player.refresh_from_db()
    assert player.is_quarantined
    assert log.score_history is not None
    assert log.score_history.new_score == second.json()["data"]["new_score"] == 2000


@pytest.mark.embedded
def test_hammering_in_real_time_gets_blocked(player, client_for, mint):
    """A scripted loop as fast as it can go (tokens minted the same second): blocked before the rate limit."""
    client = client_for(player)
    statuses = [submit(client, mint(player, increment=1000)).status_code for _ in range(10)]
    assert 429 in statuses, statuses
    first_block = statuses.index(429)
    assert first_block < 8
    assert statuses[0] == 200  # one level at the ceiling is what a keen human does
    assert FraudLog.objects.filter(user=player, decision=FraudLog.Decision.BLOCKED).exists()


@pytest.mark.embedded
def test_a_block_threshold_above_one_turns_blocking_off(player, client_for, mint):
    client = client_for(player)
    with override_settings(FRAUD_BLOCK_THRESHOLD=1.01):
        statuses = [submit(client, mint(player, increment=1000)).status_code for _ in range(10)]
    assert statuses == [200] * 10
    assert not FraudLog.objects.filter(decision=FraudLog.Decision.BLOCKED).exists()
    applied_and_logged = [FraudLog.Decision.FLAGGED, FraudLog.Decision.QUARANTINED]
    assert FraudLog.objects.filter(user=player, decision__in=applied_and_logged).count() >= 5


@pytest.mark.embedded
@override_settings(FRAUD_FLAG_THRESHOLD=0.05)
def test_rejected_and_replayed_tokens_feed_the_token_abuse_rule(player, client_for, mint):
    client = client_for(player)
    used = mint(player, increment=10)
    assert submit(client, used).status_code == 200
    assert [submit(client, used).status_code for _ in range(2)] == [409, 409]
    assert [submit(client, "not-a-token").status_code for _ in range(3)] == [401, 401, 401]

    assert submit(client, mint(player, increment=10)).status_code == 200
    log = FraudLog.objects.get(user=player)
    assert "token_abuse" in log.rule_names
    reason = next(r["reason"] for r in log.metadata["rules"] if r["rule"] == "token_abuse")
    assert reason.startswith("5 rejected action tokens from this player")


@pytest.mark.embedded
@override_settings(FRAUD_FLAG_THRESHOLD=0.01)
def test_many_accounts_scoring_from_one_address(make_player, client_for, mint):
    players = [make_player() for _ in range(6)]
    for p in players:
        assert post_update(client_for(p), mint(p, increment=10), REMOTE_ADDR="198.51.100.7").status_code == 200
    log = FraudLog.objects.get(user=players[-1])
    assert log.rule_names == ["shared_ip"]
    assert "6 accounts submitted scores from 198.51.100.7" in log.metadata["rules"][0]["reason"]
    assert not FraudLog.objects.filter(user__in=players[:3]).exists()


def test_logs_never_carry_the_action_token(player, client_for, mint, clock):
    client = client_for(player)
    tokens = []
    for _ in range(5):
        clock.advance(1)
        tokens.append(mint(player, increment=1000))
        submit(client, tokens[-1])
    assert FraudLog.objects.exists()
    dumped = json.dumps([log.metadata for log in FraudLog.objects.all()])
    for token in tokens:
        assert token not in dumped
        assert verify(token, now=clock.now).nonce not in dumped


@pytest.mark.redis
def test_redis_windows_are_capped_and_expire(player, client_for, mint, redis_client, no_fraud_blocking, no_rate_limits):
    client = client_for(player)
    for _ in range(windows.WINDOW_SIZE + 5):
        assert submit(client, mint(player, increment=10)).status_code == 200
    player_key = f"sb:{{gate}}:fraud:p:{player.pk}"
    assert redis_client.llen(player_key) == windows.WINDOW_SIZE
    assert 0 < redis_client.ttl(player_key) <= windows.WINDOW_TTL_SECONDS
    assert 0 < redis_client.ttl("sb:{gate}:fraud:ip:127.0.0.1") <= windows.IP_WINDOW_SECONDS


@pytest.mark.redis
def test_a_replayed_token_is_answered_409_without_joining_the_window(
    player, client_for, mint, redis_client, no_fraud_blocking, no_rate_limits
):
    """The replay pre-filter shares the window's round trip: a repeat is neither recorded nor
    assessed, so retries of one action cannot make a player look like a bot."""
    client = client_for(player)
    token = mint(player, increment=10)
    assert submit(client, token).status_code == 200
    replays = [submit(client, token) for _ in range(5)]
    assert [r.status_code for r in replays] == [409] * 5
    assert replays[0].json()["error"]["details"]["new_score"] == 10
    assert redis_client.llen(f"sb:{{gate}}:fraud:p:{player.pk}") == 1
    assert submit(client, mint(player, increment=10)).status_code == 200
    assert redis_client.llen(f"sb:{{gate}}:fraud:p:{player.pk}") == 2


@pytest.mark.redis
@pytest.mark.postgres
def test_engine_reads_postgres_when_redis_is_down(player, mint):
    """Production with Redis down: the player's window comes from score_history."""
    ScoreHistory.objects.create(
        user=player, score_increment=1000, old_score=0, new_score=1000, action_type="LEVEL_COMPLETION",
        action_id="earlier-action", action_token_hash="x", action_timestamp=None,
    )  # fmt: skip
    claims = verify(mint(player, increment=1000))
    scoreboard_redis._client.cache_clear()
    ranking._index.cache_clear()
    try:
        with override_settings(REDIS_URL="redis://127.0.0.1:1/0", FRAUD_BLOCK_THRESHOLD=1.01):
            assessment = fraud_services.score_attempt_assess(
                user=player, claims=claims, context=RequestContext(ip_address="203.0.113.9")
            )
    finally:
        scoreboard_redis._client.cache_clear()
        ranking._index.cache_clear()
    assert assessment.window_source == "database"
    # The earlier row's action happened "now" (no timestamp: its creation time), so two levels 0 s apart.
    assert {r["rule"] for r in assessment.reasons} == {
        "impossible_score_jump",
        "min_play_time",
        "opening_run",
    }
    opening = next(r for r in assessment.reasons if r["rule"] == "opening_run")
    assert "1000 (top 2.4%), 1000 (top 2.4%)" in str(opening["reason"])
