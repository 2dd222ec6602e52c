"""Redis trouble is a degraded mode: with every Redis client of the service on a throwaway server
that is stopped or frozen (SIGSTOP) mid-load, score updates keep committing on PostgreSQL,
/readyz stays 200 with Redis "degraded", and the index is repaired as soon as Redis is back."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from django.db import connections
from django.test import Client, override_settings

from accounts.models import User
from scoreboard import redis as scoreboard_redis
from scores.models import BoardEntry, ScoreHistory
from scores.selectors import leaderboard_top
from tests.conftest import submit

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


def wait_for(condition: Callable[[], bool], seconds: float = 15.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


def readyz() -> tuple[int, dict[str, str]]:
    response = Client().get("/readyz")
    body = response.json()
    return response.status_code, body["data"]["checks"] if response.status_code == 200 else body["error"]


def db_order() -> list[str]:
    entries = BoardEntry.objects.filter(board_id="global", period_key="all", user__is_active=True)
    return [str(pk) for pk in entries.order_by("sort_value", "reached_at", "user_id").values_list("user_id", flat=True)]


@pytest.mark.django_db
def test_updates_commit_and_readyz_stays_ready_through_a_freeze_and_a_stop(
    own_redis, make_player, client_for, mint, unthrottled
):
    players = [make_player() for _ in range(4)]
    clients = [client_for(p) for p in players]
    assert readyz() == (200, {"database": "ok", "migrations": "ok", "redis": "ok"})
    statuses: list[int] = []

    def play(rounds: int, increment: int) -> None:
        for _ in range(rounds):
            for player, client in zip(players, clients, strict=True):
                statuses.append(submit(client, mint(player, increment=increment)).status_code)

    play(2, 10)
    own_redis.freeze()  # mid-load: the next update finds Redis hung
    try:
        play(3, 20)
        frozen = readyz()
    finally:
        own_redis.thaw()
    own_redis.stop()
    play(2, 5)
    stopped = readyz()

    assert statuses == [200] * (4 * 7)
    assert frozen == (200, {"database": "ok", "migrations": "ok", "redis": "degraded"})
    assert stopped == (200, {"database": "ok", "migrations": "ok", "redis": "degraded"})
    assert {p.current_score for p in User.objects.filter(pk__in=[p.pk for p in players])} == {2 * 10 + 3 * 20 + 2 * 5}
    assert ScoreHistory.objects.filter(user__in=players).count() == 4 * 7
    # The board is served from PostgreSQL meanwhile.
    assert leaderboard_top(limit=10).source == "database"


@pytest.mark.django_db(transaction=True)
def test_an_empty_redis_after_a_restart_is_repaired_at_once(own_redis, make_player, client_for, mint, unthrottled):
    """No waiting for the scheduled drift check: the reconnect hook repairs the index."""
    players = [make_player() for _ in range(4)]
    with override_settings(CELERY_TASK_ALWAYS_EAGER=True):  # the hook's task runs in the hook's thread
        for i, player in enumerate(players):
            assert submit(client_for(player), mint(player, increment=10 * (i + 1))).status_code == 200
        assert [r.user_id for r in leaderboard_top(limit=10).rows] == db_order()

        port = own_redis.port
        own_redis.stop()
        assert submit(client_for(players[0]), mint(players[0], increment=100)).status_code == 200  # PostgreSQL only
        own_redis.port = port
        own_redis.start()  # back, without its data

        def repaired() -> bool:
            page = leaderboard_top(limit=10)
            return page.source == "redis" and [r.user_id for r in page.rows] == db_order()

        assert wait_for(repaired), leaderboard_top(limit=10)
    assert not scoreboard_redis.breaker_for(f"127.0.0.1:{port}").is_open
    connections.close_all()
