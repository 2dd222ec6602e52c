"""Redis is derived data: when it is unreachable an update still commits in PostgreSQL and the board
is served from PostgreSQL; once Redis is back the drift check repairs the index."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.test import override_settings

from scoreboard import redis as scoreboard_redis
from scores import ranking, services
from scores.models import BoardEntry, ScoreHistory
from scores.selectors import leaderboard_top
from tests.conftest import caches_on, submit

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.django_db]

DEAD_REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens on port 1: connections are refused at once


def _forget_clients() -> None:
    scoreboard_redis._client.cache_clear()
    ranking._index.cache_clear()


@pytest.fixture
def redis_down() -> Iterator[None]:
    _forget_clients()
    with override_settings(REDIS_URL=DEAD_REDIS_URL):
        yield
    _forget_clients()


def db_order() -> list[str]:
    entries = BoardEntry.objects.filter(board_id="global", period_key="all").order_by(
        "sort_value", "reached_at", "user_id"
    )
    return [str(pk) for pk in entries.values_list("user_id", flat=True)]


def test_update_commits_and_board_comes_from_postgres_while_redis_is_down(
    make_player, client_for, mint, api_client, unthrottled, redis_down
):
    leader, climber = make_player(), make_player()
    assert submit(client_for(leader), mint(leader, increment=500)).status_code == 200

    response = submit(client_for(climber), mint(climber, increment=300))

    assert response.status_code == 200, response.json()
    data = response.json()["data"]
    assert (data["old_score"], data["new_score"], data["old_rank"], data["new_rank"]) == (0, 300, None, 2)
    climber.refresh_from_db()
    assert climber.current_score == 300
    assert ScoreHistory.objects.filter(user=climber).count() == 1

    board = api_client.get("/v1/leaderboard")
    assert board.status_code == 200
    rows = board.json()["data"]["leaderboard"]
    assert [(r["user_id"], r["score"], r["rank"]) for r in rows] == [
        (str(leader.pk), 500, 1),
        (str(climber.pk), 300, 2),
    ]
    assert board.json()["data"]["total_players"] == 2
    assert leaderboard_top(limit=10).source == "database"


def test_drift_check_repairs_the_index_once_redis_is_back(make_player, client_for, mint, unthrottled, redis_client):
    early, late = make_player(), make_player()
    assert submit(client_for(early), mint(early, increment=100)).status_code == 200  # indexed

    _forget_clients()
    with override_settings(REDIS_URL=DEAD_REDIS_URL):
        assert submit(client_for(late), mint(late, increment=200)).status_code == 200  # not indexed
        assert submit(client_for(early), mint(early, increment=50)).status_code == 200  # index now stale
    _forget_clients()

    # Redis answers again but missed both updates: it still shows the old board.
    stale = leaderboard_top(limit=10)
    assert stale.source == "redis"
    assert [(r.user_id, r.score) for r in stale.rows] == [(str(early.pk), 100)]

    report = services.leaderboard_drift_check()
    assert (report.missing, report.stale, report.extra, report.repaired) == (1, 1, 0, True)

    repaired = leaderboard_top(limit=10)
    assert repaired.source == "redis"
    assert [r.user_id for r in repaired.rows] == db_order() == [str(late.pk), str(early.pk)]
    assert [r.score for r in repaired.rows] == [200, 150]
    assert services.leaderboard_drift_check().repaired is False  # nothing left to repair


def test_rebuild_command_restores_a_flushed_index(make_player, client_for, mint, unthrottled, redis_client):
    from django.core.management import call_command

    players = [make_player() for _ in range(3)]
    for increment, player in zip((30, 10, 20), players, strict=True):
        assert submit(client_for(player), mint(player, increment=increment)).status_code == 200
    redis_client.flushdb()

    call_command("rebuild_leaderboard")

    assert [r.user_id for r in leaderboard_top(limit=10).rows] == [str(players[i].pk) for i in (0, 2, 1)]


def test_ranks_in_the_response_are_right_while_redis_is_down(make_player, client_for, mint, unthrottled, redis_down):
    """The PostgreSQL fallback ranks a player who overtakes others: old_rank is where they were."""
    players = [make_player() for _ in range(3)]
    for increment, player in zip((300, 200, 100), players, strict=True):
        assert submit(client_for(player), mint(player, increment=increment)).status_code == 200
    last = players[2]

    data = submit(client_for(last), mint(last, increment=250)).json()["data"]

    assert (data["old_score"], data["new_score"], data["old_rank"], data["new_rank"]) == (100, 350, 3, 1)


def test_ranks_while_redis_is_down_are_bounded_counts_never_a_scan_of_the_board(
    make_player, client_for, mint, unthrottled, redis_down, settings
):
    """Exact up to DEGRADED_RANK_LIMIT, None beyond; each count reads at most that many rows."""
    from django.db import connection

    settings.DEGRADED_RANK_LIMIT = 2
    players = [make_player() for _ in range(4)]
    for increment, player in zip((400, 300, 200, 100), players, strict=True):
        assert submit(client_for(player), mint(player, increment=increment)).status_code == 200
    statements: list[str] = []

    def record(execute, sql, params, many, context):
        statements.append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(record):
        low = submit(client_for(players[3]), mint(players[3], increment=50)).json()["data"]  # 4th -> 4th
    climber = submit(client_for(players[2]), mint(players[2], increment=250)).json()["data"]  # 3rd -> 1st

    assert (low["old_rank"], low["new_rank"]) == (None, None)  # beyond the limit: unknown, not scanned
    assert (climber["old_rank"], climber["new_rank"]) == (None, 1)
    counts = [sql for sql in statements if "COUNT(" in sql.upper() and "board_entries" in sql]  # the ranks
    assert len(counts) == 2 and all("LIMIT 2" in sql for sql in counts), counts


def test_replay_is_still_refused_while_redis_is_down(player, auth_client, mint, unthrottled, redis_down):
    """The Redis pre-filter is only an optimisation: PostgreSQL's unique constraint refuses the replay."""
    token = mint(player, increment=60)
    assert submit(auth_client, token).status_code == 200
    again = submit(auth_client, token)
    assert again.status_code == 409
    assert again.json()["error"]["details"]["new_score"] == 60
    player.refresh_from_db()
    assert player.current_score == 60


DEAD_CACHES = caches_on(DEAD_REDIS_URL)


def test_whole_pipeline_with_redis_down_and_limits_on(player, client_for, mint, api_client, redis_down):
    """Everything Redis backs is down at once (index, pre-filter, rate-limit counters, fraud windows),
    with the default limits on: the update still commits and the board still answers."""
    from scoreboard import ratelimit

    ratelimit.local_counters.reset()
    ratelimit.breaker.reset()
    with override_settings(CACHES=DEAD_CACHES):
        response = submit(client_for(player), mint(player, increment=120))
        assert response.status_code == 200, response.content
        assert response.json()["data"]["new_score"] == 120
        board = api_client.get("/v1/leaderboard").json()["data"]
    assert board["leaderboard"][0]["user_id"] == str(player.pk)
    player.refresh_from_db()
    assert player.current_score == 120
    ratelimit.local_counters.reset()
    ratelimit.breaker.reset()


def _board_frames(pubsub, seconds: float = 1.0) -> list[dict]:
    import time

    import orjson

    frames, deadline = [], time.monotonic() + seconds
    while time.monotonic() < deadline:
        message = pubsub.get_message(timeout=0.1)
        if message and message["type"] == "pmessage":
            _seq, payload = message["data"].split(b"\n", 1)
            frames.append(orjson.loads(payload))
    return frames


def test_a_repair_broadcasts_the_board_and_a_check_that_finds_nothing_does_not(
    make_player, client_for, mint, unthrottled, redis_client
):
    """Updates made while Redis was down were committed but never broadcast: the repair that puts
    them into the index also brings spectators the corrected board."""
    from realtime.hub import board_channel

    early, late = make_player(), make_player()
    assert submit(client_for(early), mint(early, increment=100)).status_code == 200
    _forget_clients()
    with override_settings(REDIS_URL=DEAD_REDIS_URL):
        assert submit(client_for(late), mint(late, increment=200)).status_code == 200  # never published
    _forget_clients()

    pubsub = redis_client.pubsub()
    pubsub.psubscribe(board_channel() + b"*")  # every board's channel
    try:
        assert services.leaderboard_drift_check().repaired is True
        repaired = [f for f in _board_frames(pubsub) if f["board"] == "global"]
        assert len(repaired) == 1
        assert [(r["user_id"], r["score"]) for r in repaired[0]["leaderboard"]] == [
            (str(late.pk), 200),
            (str(early.pk), 100),
        ]

        assert services.leaderboard_drift_check().repaired is False
        assert _board_frames(pubsub) == []
    finally:
        pubsub.close()
