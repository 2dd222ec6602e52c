"""Property: whatever the sequence of updates (ties included), the Redis index orders and ranks
players exactly as PostgreSQL does under the one ordering rule, before and after a rebuild."""

from __future__ import annotations

import datetime as dt
from unittest import mock

import pytest
from django.db import transaction
from django.test import override_settings
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accounts.models import User
from scores import services
from scores.ranking import redis_index
from scores.selectors import ORDERING, leaderboard_top, player_rank, rank_in_db, ranked_players
from tests.factories import PlayerFactory
from tests.scores.conftest import UNTHROTTLED

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.django_db]

PLAYERS = 5
BASE_TIME = dt.datetime(2026, 1, 1, 12, 0, 0, 123456, tzinfo=dt.UTC)

# (player index, increment, how far the frozen clock moves before this update). Small increments and
# a clock that often stands still make equal scores reached at the same microsecond common.
updates = st.lists(
    st.tuples(
        st.integers(0, PLAYERS - 1),
        st.sampled_from([1, 2, 3, 5]),
        st.sampled_from([0, 0, 1, 1_000_000]),
    ),
    min_size=1,
    max_size=25,
)


def expected_order() -> list[str]:
    return [str(pk) for pk in ranked_players().order_by(*ORDERING).values_list("id", flat=True)]


def assert_redis_agrees_with_postgres(players: list[User]) -> None:
    expected = expected_order()
    page = leaderboard_top(limit=100)
    assert page.source == "redis"
    assert [row.user_id for row in page.rows] == expected
    assert [row.rank for row in page.rows] == list(range(1, len(expected) + 1))
    assert page.total_players == len(expected)
    scores = {str(pk): score for pk, score in ranked_players().values_list("id", "current_score")}
    assert [row.score for row in page.rows] == [scores[uid] for uid in expected]
    for player in players:
        player.refresh_from_db()
        uid = str(player.pk)
        db_rank = rank_in_db(user_id=uid, score=player.current_score, reached_at=player.score_reached_at)
        assert player_rank(user_id=uid) == db_rank
        assert db_rank == (expected.index(uid) + 1 if uid in expected else None)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=updates)
def test_redis_order_equals_postgres_order(ops, mint, redis_client):
    redis_client.flushdb()
    clock = {"now": BASE_TIME}
    with (
        override_settings(**UNTHROTTLED),
        mock.patch("django.utils.timezone.now", lambda: clock["now"]),
        transaction.atomic(),
    ):
        players = PlayerFactory.create_batch(PLAYERS)
        for index, increment, step_us in ops:
            clock["now"] += dt.timedelta(microseconds=step_us)
            user = players[index]
            before = expected_order()
            result = services.score_submit(user=user, action_token=mint(user, increment=increment))
            # The ranks the API answers are the player's places in PostgreSQL's order before and after.
            uid = str(user.pk)
            assert result.old_rank == (before.index(uid) + 1 if uid in before else None)
            assert result.new_rank == expected_order().index(uid) + 1

        assert_redis_agrees_with_postgres(players)

        redis_client.flushdb()
        assert services.leaderboard_rebuild() == len(expected_order())
        assert_redis_agrees_with_postgres(players)

        index = redis_index()
        assert index is not None
        report = services.leaderboard_drift_check()
        assert (report.missing, report.stale, report.extra) == (0, 0, 0)
        transaction.set_rollback(True)
