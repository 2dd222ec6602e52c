"""Velocity budgets, the population sketch, account clusters, retries and the settings check, through
the real score update (Redis windows, and PostgreSQL/SQLite when Redis is not there)."""

from __future__ import annotations

import datetime as dt
import math
import random

import pytest
from django.core.checks import run_checks
from django.test import override_settings
from django.utils import timezone

from fraud import population, rules, windows
from fraud.models import FraudLog
from scores.models import ScoreHistory
from tests.conftest import submit

pytestmark = [pytest.mark.django_db]


def post_update(client, token: str, **meta: str):
    return client.post("/v1/scores/update", {"action_token": token}, format="json", **meta)


# --- the settings check ------------------------------------------------------------------------
@pytest.mark.embedded
def test_a_typo_in_the_rule_settings_fails_the_check_framework():
    with override_settings(FRAUD_RULE_WEIGHTS={"rapid_sucession": 0.3}, FRAUD_RULE_PARAMS={"shared_ip_acounts": 4}):
        ids = {e.id for e in run_checks() if str(e.id).startswith("fraud.")}
    assert ids == {"fraud.E002", "fraud.E005"}
    with override_settings(FRAUD_RULE_WEIGHTS={"shared_ip": "high"}, FRAUD_RULE_PARAMS={"shared_ip_accounts": 2.5}):
        ids = {e.id for e in run_checks() if str(e.id).startswith("fraud.")}
    assert ids == {"fraud.E003", "fraud.E006"}
    assert not [e for e in run_checks() if str(e.id).startswith("fraud.")]  # the defaults are clean


# --- velocity windows --------------------------------------------------------------------------
@pytest.mark.redis
def test_redis_velocity_counts_points_and_submissions_per_window_type_and_total(
    player, client_for, mint, clock, no_fraud_blocking, no_rate_limits
):
    client = client_for(player)
    for increment, action_type in ((100, "LEVEL_COMPLETION"), (200, "ACHIEVEMENT_UNLOCK"), (300, "LEVEL_COMPLETION")):
        clock.advance(20)
        assert submit(client, mint(player, increment=increment, action_type=action_type)).status_code == 200
    clock.advance(120)  # the first three leave the 1-minute window
    attempt = rules.Attempt(
        submitted_at=clock.now, action_timestamp=int(clock.now), action_type="LEVEL_COMPLETION",
        score_increment=50, action_id="probe-000000",
    )  # fmt: skip
    view = windows.attempt_record_and_load(user_id=str(player.pk), ip="203.0.113.1", attempt=attempt)
    assert view.source == "redis"
    assert view.velocity[(60, "LEVEL_COMPLETION")] == (50, 1)
    assert view.velocity[(600, "LEVEL_COMPLETION")] == (450, 3)
    assert view.velocity[(600, rules.TOTAL)] == (650, 4)
    assert view.velocity[(3600, rules.TOTAL)] == (650, 4)


@pytest.mark.redis
def test_redis_all_types_velocity_counts_shares_of_each_types_maximum(
    player, client_for, mint, clock, no_fraud_blocking, no_rate_limits
):
    """A 3-minute lap (180,000 ms of LAP_TIME's 3,600,000) adds 0.05 of a maximum increment to the
    all-types velocity, not 180,000 points; a level of 500 adds 0.5 (thousandths: 50 and 500)."""
    client = client_for(player)
    for increment, action_type in ((500, "LEVEL_COMPLETION"), (180_000, "LAP_TIME")):
        clock.advance(30)
        assert submit(client, mint(player, increment=increment, action_type=action_type)).status_code == 200
    attempt = rules.Attempt(
        submitted_at=clock.now + 1, action_timestamp=int(clock.now), action_type="LEVEL_COMPLETION",
        score_increment=50, action_id="probe-000000",
    )  # fmt: skip
    view = windows.attempt_record_and_load(user_id=str(player.pk), ip="203.0.113.1", attempt=attempt)
    assert view.source == "redis"
    assert view.velocity[(600, "LEVEL_COMPLETION")] == (550, 2)  # the type's own budget counts points
    assert view.velocity[(600, rules.TOTAL)] == (500 + 50 + 50, 3)
    assert windows._velocity_from_database(user_id=str(player.pk), attempt=attempt)[(600, rules.TOTAL)] == (600, 3)


@pytest.mark.embedded
def test_database_velocity_reads_score_history(player, client_for, mint, clock, no_fraud_blocking, no_rate_limits):
    client = client_for(player)
    for increment in (100, 200):
        clock.advance(30)
        assert submit(client, mint(player, increment=increment)).status_code == 200
    attempt = rules.Attempt(
        submitted_at=clock.now + 1, action_timestamp=int(clock.now), action_type="LEVEL_COMPLETION",
        score_increment=5, action_id="probe-000000",
    )  # fmt: skip
    velocity = windows._velocity_from_database(user_id=str(player.pk), attempt=attempt)
    assert velocity[(60, "LEVEL_COMPLETION")] == (305, 3)
    assert velocity[(3600, rules.TOTAL)] == (305, 3)


@pytest.mark.redis
def test_a_retry_after_a_503_adds_no_risk_and_is_counted_once(player, client_for, mint, clock, redis_client):
    """The first attempt's window was recorded, then the database failed (503, nothing committed):
    the game client retries the same token. The retry is neither a second action nor a second
    sample of velocity, so its risk equals the first attempt's."""
    from fraud import services as fraud_services
    from scores.action_tokens import verify
    from scores.services import RequestContext

    client = client_for(player)
    for _ in range(3):
        clock.advance(25)
        assert submit(client, mint(player, increment=400)).status_code == 200
    clock.advance(25)
    token = mint(player, increment=400)
    claims = verify(token, now=clock.now)
    context = RequestContext(ip_address="127.0.0.1")
    first = fraud_services.score_attempt_assess(user=player, claims=claims, context=context)  # then "503"
    clock.advance(2)
    retries = [fraud_services.score_attempt_assess(user=player, claims=claims, context=context) for _ in range(5)]
    assert [r.risk_score for r in retries] == [first.risk_score] * 5
    assert redis_client.llen(f"sb:{{gate}}:fraud:p:{player.pk}") == 4
    assert submit(client, token).status_code == 200  # and it still applies once
    assert ScoreHistory.objects.filter(user=player).count() == 4


# --- the population sketch ---------------------------------------------------------------------
@pytest.mark.embedded
def test_population_sketch_is_the_prior_until_the_batch_job_feeds_it(make_player, clock):
    # The prior: increments spread evenly over 1..1000, the maximum as common as each fortieth of
    # the range (2.4%: games have perfect levels; one integer's worth, 0.1%, made two of them a bot).
    assert abs(population.increment_tail("LEVEL_COMPLETION", 900) - 0.12) < 0.01
    assert abs(population.increment_tail("LEVEL_COMPLETION", 1000) - 1 / 41) < 0.001
    # Humans who mostly score 20-300: after a refresh 900 is rare.
    now = timezone.now()
    for n in range(12):
        player = make_player()
        for i in range(25):
            ScoreHistory.objects.create(
                user=player, score_increment=20 + (i * 37 + n * 11) % 280, old_score=0, new_score=0,
                action_type="LEVEL_COMPLETION", action_id=f"pop-{n}-{i}", action_token_hash="x",
                created_at=now - dt.timedelta(minutes=5),
            )  # fmt: skip
    added = population.population_refresh(since=now - dt.timedelta(hours=1))
    assert added == {"LEVEL_COMPLETION": 300}
    assert population.increment_tail("LEVEL_COMPLETION", 900) < 0.005
    assert 0.3 < population.increment_tail("LEVEL_COMPLETION", 150) < 0.7


@pytest.mark.embedded
def test_spacing_sketch_learns_how_quickly_players_follow_one_action_with_the_next(make_player):
    """No spacing evidence (1.0) until the batch job has seen enough gaps; then the share of players'
    gaps at or below a gap. 12 players, one action every 20 s (11 of them) or 60 s (one): 4 s is
    quicker than any of them, 20 s is where most are, a pause of over an hour is not a spacing."""
    assert population.gap_tail("LEVEL_COMPLETION", 2.0) == 1.0
    now = timezone.now()
    for n in range(12):
        player = make_player()
        gap = 60 if n == 0 else 20
        for i in range(25):
            row = ScoreHistory.objects.create(
                user=player, score_increment=100, old_score=0, new_score=0, action_type="LEVEL_COMPLETION",
                action_id=f"gap-{n}-{i}", action_token_hash="x",
            )  # fmt: skip
            at = now - dt.timedelta(seconds=30 * 60 - i * gap)  # created_at is auto_now_add
            ScoreHistory.objects.filter(pk=row.pk).update(created_at=at)
    population.population_refresh(since=now - dt.timedelta(hours=1))
    assert population.describe()["LEVEL_COMPLETION"]["gaps"] == 12 * 24
    assert population.gap_tail("LEVEL_COMPLETION", 4.0) == population.TAIL_FLOOR
    assert 0.5 < population.gap_tail("LEVEL_COMPLETION", 25.0) <= 1.0
    assert population.gap_tail("LEVEL_COMPLETION", 25.0) < population.gap_tail("LEVEL_COMPLETION", 70.0) == 1.0
    assert population.gap_tail("ACHIEVEMENT_UNLOCK", 4.0) == 1.0  # no samples of that type


@pytest.mark.redis
def test_a_failed_read_of_the_sketch_keeps_the_learned_copy(make_player, settings):
    """A timeout on the stored sketch (Redis unreachable here) must not put the prior in its place:
    the prior has no idea how common a perfect level is among these players."""
    from tests.conftest import use_redis

    now = timezone.now()
    for n in range(10):
        player = make_player()
        for i in range(25):
            ScoreHistory.objects.create(
                user=player, score_increment=1000 if i % 5 == 0 else 100 + i, old_score=0, new_score=0,
                action_type="LEVEL_COMPLETION", action_id=f"keep-{n}-{i}", action_token_hash="x",
            )  # fmt: skip
    population.population_refresh(since=now - dt.timedelta(hours=1))
    learned = population.increment_tail("LEVEL_COMPLETION", 1000)
    assert 0.15 < learned < 0.25  # a perfect level every 5th
    reachable = str(settings.REDIS_URL)
    population._memo.loaded_at = -1e18  # the copy is due for a refresh...
    use_redis(settings, "redis://127.0.0.1:1/0")  # ...and the store does not answer
    try:
        assert population.increment_tail("LEVEL_COMPLETION", 1000) == learned
        assert population.population_refresh(since=now - dt.timedelta(hours=1)) == {}  # nothing overwritten
    finally:
        use_redis(settings, reachable)
    population._memo.loaded_at = -1e18
    assert population.increment_tail("LEVEL_COMPLETION", 1000) == learned  # still stored


@pytest.mark.embedded
def test_population_sketch_leaves_out_players_with_fraud_logs_and_caps_each_player(make_player):
    now = timezone.now()
    farmer, human = make_player(), make_player()
    for i in range(300):
        ScoreHistory.objects.create(
            user=farmer, score_increment=1000, old_score=0, new_score=0, action_type="LEVEL_COMPLETION",
            action_id=f"farm-{i}", action_token_hash="x",
        )  # fmt: skip
    for i in range(80):
        ScoreHistory.objects.create(
            user=human, score_increment=100, old_score=0, new_score=0, action_type="LEVEL_COMPLETION",
            action_id=f"human-{i}", action_token_hash="x",
        )  # fmt: skip
    FraudLog.objects.create(user=farmer, event_type="x", risk_score="0.90", decision=FraudLog.Decision.BLOCKED)
    added = population.population_refresh(since=now - dt.timedelta(hours=1))
    assert added == {"LEVEL_COMPLETION": population.PER_PLAYER_SAMPLES}  # the human only, capped


# --- clusters through the API ------------------------------------------------------------------
FARM_IP = "198.18.0.1"
NAT_IP = "100.64.0.1"


@pytest.mark.redis
def test_a_burst_of_fresh_accounts_farming_from_one_address_is_stopped_as_a_cluster(
    make_player, client_for, mint, clock
):
    farm = [make_player(username=f"farm{i}") for i in range(8)]
    statuses: dict[str, list[int]] = {p.username: [] for p in farm}
    for _round in range(3):
        for p in farm:
            clock.advance(2)
            response = post_update(
                client_for(p), mint(p, increment=1000), REMOTE_ADDR=FARM_IP, HTTP_USER_AGENT="farm/1"
            )
            statuses[p.username].append(response.status_code)
    caught = [
        p for p in farm
        if FraudLog.objects.filter(user=p, decision__in=["quarantined", "blocked"]).exists()
    ]  # fmt: skip
    assert len(caught) == len(farm), statuses
    # From the 4th account on, the farm is caught at each account's first submission.
    for p in farm[3:]:
        first = FraudLog.objects.filter(user=p).order_by("created_at").first()
        assert first is not None and "account_cluster" in first.rule_names, statuses
    last = FraudLog.objects.filter(user=farm[-1]).first()
    assert last is not None
    reason = next(
        r["reason"] for r in last.metadata["rules"]
        if r["rule"] == "account_cluster"
    )  # fmt: skip
    assert f"from address {FARM_IP}" in reason or "from subnet" in reason or "from fingerprint" in reason


@pytest.mark.redis
def test_a_nat_of_humans_is_never_blocked_or_quarantined(make_player, client_for, mint, clock):
    humans = [make_player(username=f"nat{i}") for i in range(20)]
    increments = [37, 512, 80, 940, 260, 705, 150, 33, 610, 420, 1000, 90, 300, 780, 55]
    rng = random.Random(5)
    # Each person plays on their own clock: log-normal gaps around 20 s.
    events = []
    for n, p in enumerate(humans):
        t = rng.uniform(0, 20)
        for k in range(5):
            events.append((t, n, k, p))
            t += max(4.0, rng.lognormvariate(math.log(20), 0.6))
    start = clock.now
    for t, n, k, p in sorted(events, key=lambda e: e[0]):
        clock.now = start + t
        increment = increments[(n * 7 + k * 3) % len(increments)]
        response = post_update(
            client_for(p), mint(p, increment=increment), REMOTE_ADDR=NAT_IP, HTTP_USER_AGENT="Mozilla/5.0 phone"
        )
        assert response.status_code == 200, response.content
    assert not FraudLog.objects.filter(decision__in=["quarantined", "blocked"]).exists()
    assert not FraudLog.objects.filter(rules__contains=",account_cluster,").exists()
