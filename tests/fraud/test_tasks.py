"""Background jobs: the fraud batch scan, nonce cleanup and the drift check — eagerly, and once for
real in a Celery worker process with Redis as the broker."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest
from django.conf import settings
from django.db import connection
from django.utils import timezone

from accounts.models import User
from accounts.tasks import outstanding_tokens_purge_task
from fraud import services as fraud_services
from fraud.models import FraudLog
from fraud.tasks import fraud_batch_scan_task
from scoreboard.celery import app as celery_app
from scoreboard.tasks import personal_data_retention_task
from scores.models import ScoreHistory, UsedNonce
from scores.ranking import index_keys
from scores.tasks import (
    board_periods_maintain_task,
    leaderboard_drift_check_task,
    nonce_retention_seconds,
    used_nonces_purge_task,
)
from tests.factories import global_entry_sync

GLOBAL_ZSET = index_keys("global", "all")[0]

pytestmark = [pytest.mark.django_db]

BASE_DIR = Path(settings.BASE_DIR)
WORKER_DEADLINE_SECONDS = 90


def history(
    user: User, *, points: list[int], ip: str | None = None, ago: dt.timedelta = dt.timedelta(minutes=5)
) -> list[ScoreHistory]:
    """Applied actions for ``user`` (one row per increment), created ``ago``, with a consistent score."""
    rows, score = [], user.current_score
    for increment in points:
        rows.append(
            ScoreHistory(
                user=user,
                score_increment=increment,
                old_score=score,
                new_score=score + increment,
                action_type="LEVEL_COMPLETION",
                action_id=uuid.uuid4().hex,
                action_token_hash="h",
                ip_address=ip,
                boards=[{"board": "global", "period": "all", "old": score, "new": score + increment}],
            )
        )
        score += increment
    created = ScoreHistory.objects.bulk_create(rows)
    ScoreHistory.objects.filter(pk__in=[r.pk for r in created]).update(created_at=timezone.now() - ago)
    User.objects.filter(pk=user.pk).update(
        current_score=score, score_reached_at=timezone.now(), score_version=user.score_version + 1
    )
    user.refresh_from_db()
    global_entry_sync(user)
    return created


# --- the batch scan ---------------------------------------------------------------------------
@pytest.mark.embedded
def test_a_player_far_above_everyone_else_is_a_velocity_outlier(make_player):
    for _ in range(8):
        history(make_player(), points=[400, 500, 300, 600])  # ~1,800 points an hour
    farmer = make_player()
    rows = history(farmer, points=[1000] * 30)

    report = fraud_batch_scan_task.apply().get()

    assert report["velocity_outliers"] == 1
    log = FraudLog.objects.get(event_type="velocity_outlier")
    assert log.user == farmer
    assert log.decision == FraudLog.Decision.BATCH
    assert log.rule_names == ["velocity_outlier"]
    assert float(log.risk_score) == 0.6
    assert "30000 points from 30 actions in 60 min" in log.metadata["rules"][0]["reason"]
    assert sorted(log.metadata["history_ids"]) == sorted(str(r.pk) for r in rows)


@pytest.mark.embedded
def test_an_absolute_ceiling_applies_even_with_few_players(make_player, settings):
    settings.FRAUD_SCAN_POINTS_PER_WINDOW = 20_000
    farmer = make_player()
    history(farmer, points=[1000] * 25)
    fraud_services.fraud_batch_scan()
    log = FraudLog.objects.get(user=farmer)
    assert float(log.risk_score) == 0.9
    assert "at or above 20000" in log.metadata["rules"][0]["reason"]


@pytest.mark.embedded
def test_by_default_the_scan_quarantines_beyond_what_a_keen_human_can_do_in_the_hour(make_player):
    """The ceiling is the action type's 1-hour velocity budget (305,100 points of LEVEL_COMPLETION),
    not a fixed 100,000: a keen human with large increments scores ~165,000 in an hour."""
    assert fraud_services.scan_budgets()["LEVEL_COMPLETION"] == 305_100
    keen, farmer = make_player(), make_player()
    history(keen, points=[700] * 240)  # a level every 15 s for an hour, 700 each: 168,000
    history(farmer, points=[1000] * 320)  # 320,000
    fraud_services.fraud_batch_scan()
    keen.refresh_from_db()
    farmer.refresh_from_db()
    assert not keen.is_quarantined
    assert farmer.is_quarantined
    log = FraudLog.objects.get(user=farmer)
    assert float(log.risk_score) == 0.9
    assert (
        "320000 points of LEVEL_COMPLETION in 60 min, at or above what a keen human"
        in log.metadata["rules"][0]["reason"]
    )


@pytest.mark.embedded
def test_accounts_sharing_an_address_are_logged_one_by_one(make_player):
    farm = [make_player() for _ in range(5)]
    for account in farm:
        history(account, points=[100], ip="198.51.100.20")
    history(make_player(), points=[100], ip="203.0.113.1")

    report = fraud_services.fraud_batch_scan()

    assert report.shared_ip_clusters == 1
    logs = FraudLog.objects.filter(event_type="shared_ip_cluster")
    assert {log.user_id for log in logs} == {a.pk for a in farm}
    assert all(log.ip_address == "198.51.100.20" for log in logs)
    assert all(log.metadata["accounts_total"] == 5 for log in logs)


@pytest.mark.embedded
def test_the_scan_does_not_repeat_itself_and_ignores_old_activity(make_player):
    history(make_player(), points=[1000] * 150, ago=dt.timedelta(hours=2))  # outside the window
    farm = [make_player() for _ in range(5)]
    for account in farm:
        history(account, points=[100], ip="198.51.100.20")
    first = fraud_services.fraud_batch_scan()
    second = fraud_services.fraud_batch_scan()
    assert (first.logs_written, second.logs_written) == (5, 0)
    assert first.velocity_outliers == 0


@pytest.mark.embedded
def test_confirming_a_batch_log_reverses_every_listed_action(make_player, django_capture_on_commit_callbacks):
    for _ in range(6):
        history(make_player(), points=[300, 200])
    farmer = make_player()
    history(farmer, points=[1000] * 20)
    fraud_services.fraud_batch_scan()
    log = FraudLog.objects.get(user=farmer)
    moderator = make_player(is_staff=True)

    with django_capture_on_commit_callbacks(execute=True):
        action = fraud_services.fraud_log_confirm(fraud_log=log, moderator=moderator, reason="farming")

    farmer.refresh_from_db()
    assert (farmer.current_score, farmer.is_active) == (0, False)
    assert action.details["points_removed"] == 20_000
    assert len(action.details["reversed_history_ids"]) == 20


# --- nonce cleanup and drift check ------------------------------------------------------------
@pytest.mark.embedded
def test_nonce_cleanup_keeps_nonces_whose_tokens_could_still_verify(player):
    now = timezone.now()
    retention = dt.timedelta(seconds=nonce_retention_seconds())
    UsedNonce.objects.create(nonce="old-nonce-0001", action_id="old", user=player, created_at=now - retention * 2)
    UsedNonce.objects.create(nonce="recent-nonce-1", action_id="recent", user=player, created_at=now)

    assert used_nonces_purge_task.apply().get() == 1
    assert list(UsedNonce.objects.values_list("action_id", flat=True)) == ["recent"]
    assert nonce_retention_seconds() > settings.ACTION_TOKEN_MAX_AGE_SECONDS + settings.ACTION_TOKEN_MAX_FUTURE_SECONDS


@pytest.mark.redis
def test_the_drift_check_repairs_a_flushed_index(make_player, redis_client):
    players = [make_player() for _ in range(3)]
    for i, p in enumerate(players):
        history(p, points=[100 * (i + 1)])
    redis_client.delete(GLOBAL_ZSET)

    report = leaderboard_drift_check_task.apply().get()

    assert (report["missing"], report["repaired"]) == (3, True)
    assert redis_client.zcard(GLOBAL_ZSET) == 3


@pytest.mark.embedded
def test_tasks_run_in_process_in_the_embedded_default(player):
    """Without REDIS_URL there is no broker: .delay() runs the task right away."""
    assert celery_app.conf.task_always_eager is (not settings.REDIS_URL)
    if settings.REDIS_URL:
        return
    UsedNonce.objects.create(
        nonce="old-nonce-0002", action_id="old2", user=player, created_at=timezone.now() - dt.timedelta(days=1)
    )
    used_nonces_purge_task.delay()
    assert not UsedNonce.objects.exists()


def test_the_beat_schedule_runs_every_job():
    scheduled = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert scheduled == {
        fraud_batch_scan_task.name,
        used_nonces_purge_task.name,
        leaderboard_drift_check_task.name,
        outstanding_tokens_purge_task.name,
        board_periods_maintain_task.name,
        personal_data_retention_task.name,
    }
    assert all(name in celery_app.tasks for name in scheduled)


# --- a real worker ----------------------------------------------------------------------------
def _database_url() -> str:
    db = connection.settings_dict
    auth = quote(db["USER"] or "")
    if db.get("PASSWORD"):
        auth += ":" + quote(db["PASSWORD"])
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


@dataclass(frozen=True)
class Worker:
    queue: str
    log: Path

    def wait_for(self, condition: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + WORKER_DEADLINE_SECONDS
        while not condition():
            if time.monotonic() > deadline:
                tail = self.log.read_text()[-3000:]
                raise AssertionError(f"the worker did not {what} within {WORKER_DEADLINE_SECONDS} s; its log:\n{tail}")
            time.sleep(0.2)


@pytest.fixture
def worker(tmp_path: Path) -> Iterator[Worker]:
    """A Celery worker process on our Redis database (broker) and our PostgreSQL test database."""
    queue = f"sbtest-{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "DATABASE_URL": _database_url(),
        "REDIS_URL": settings.REDIS_URL,
        "DB_CONN_MAX_AGE": "0",
        "LOG_FORMAT": "plain",
    }
    log = (tmp_path / "worker.log").open("w")
    process = subprocess.Popen(
        [
            sys.executable, "-m", "celery", "-A", "scoreboard", "worker", "--pool=solo", "--concurrency=1",
            "--without-gossip", "--without-mingle", "--without-heartbeat", "-Q", queue, "--loglevel=INFO",
        ],
        cwd=BASE_DIR, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        yield Worker(queue=queue, log=tmp_path / "worker.log")
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


@pytest.mark.redis
@pytest.mark.postgres
@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_the_jobs_run_in_a_real_worker_with_redis_as_broker(make_player, redis_client, worker):
    players = [make_player() for _ in range(6)]
    for p in players[:5]:
        history(p, points=[300, 200])
    farmer = players[5]
    history(farmer, points=[1000] * 30)
    UsedNonce.objects.create(
        nonce="stale-nonce-01", action_id="stale", user=farmer, created_at=timezone.now() - dt.timedelta(days=1)
    )
    assert redis_client.zcard(GLOBAL_ZSET) == 0  # rows written behind the index's back

    for task in (used_nonces_purge_task, leaderboard_drift_check_task, fraud_batch_scan_task):
        task.apply_async(queue=worker.queue)

    worker.wait_for(lambda: not UsedNonce.objects.filter(action_id="stale").exists(), "purge the stale nonce")
    worker.wait_for(lambda: redis_client.zcard(GLOBAL_ZSET) == 6, "rebuild the index")
    worker.wait_for(lambda: FraudLog.objects.filter(user=farmer, event_type="velocity_outlier").exists(), "scan")
