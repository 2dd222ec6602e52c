"""Property: for random boards (sort x operator x tie policy) and random submissions (ties included),
the Redis index orders and ranks players exactly as PostgreSQL does, and both agree with a plain
Python model of the DESIGN's rules — before and after a flush and rebuild."""

from __future__ import annotations

import datetime as dt
from unittest import mock

import pytest
from django.db import transaction
from django.test import override_settings
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accounts.models import User
from scores import registry, selectors, services
from scores.boards import OPERATORS, SORTS, TIE_POLICIES, BoardSpec
from scores.models import Board
from tests.conftest import redis_flush_test_database
from tests.factories import PlayerFactory
from tests.scores.conftest import UNTHROTTLED

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.django_db]

PLAYERS = 5
BASE_TIME = dt.datetime(2026, 1, 1, 12, 0, 0, 123456, tzinfo=dt.UTC)

boards = st.tuples(st.sampled_from(SORTS), st.sampled_from(OPERATORS), st.sampled_from(TIE_POLICIES))
# (player index, submitted value, how far the frozen clock moves before it). Small values and a
# clock that often stands still make equal scores reached at the same microsecond common.
submissions = st.lists(
    st.tuples(st.integers(0, PLAYERS - 1), st.sampled_from([1, 2, 3, 5]), st.sampled_from([0, 0, 1, 1_000_000])),
    min_size=1,
    max_size=20,
)


class Model:
    """The DESIGN's rules, written out as plainly as possible (independent of scores.boards)."""

    def __init__(self, sort: str, operator: str, tie: str) -> None:
        self.sort, self.operator, self.tie = sort, operator, tie
        self.entries: dict[str, tuple[int, dt.datetime]] = {}

    def submit(self, user_id: str, value: int, now: dt.datetime) -> None:
        if user_id not in self.entries:
            self.entries[user_id] = (value, now)
            return
        old, reached = self.entries[user_id]
        if self.operator == "incr":
            new = old + value
        elif self.operator == "set":
            new = value
        elif self.sort == "desc":
            new = max(old, value)
        else:
            new = min(old, value)
        self.entries[user_id] = (new, reached if new == old else now)

    def beats(self, a: int, b: int) -> bool:
        return a > b if self.sort == "desc" else a < b

    def order(self) -> list[str]:
        def key(uid: str) -> tuple[int, dt.datetime, str]:
            score, reached = self.entries[uid]
            return (-score if self.sort == "desc" else score, reached, uid.replace("-", ""))

        return sorted(self.entries, key=key)

    def ranks(self) -> dict[str, int]:
        order = self.order()
        out: dict[str, int] = {}
        for i, uid in enumerate(order):
            score = self.entries[uid][0]
            better = [u for u in order if self.beats(self.entries[u][0], score)]
            if self.tie == "first_reached":
                out[uid] = i + 1
            elif self.tie == "competition":
                out[uid] = len(better) + 1
            else:
                out[uid] = len({self.entries[u][0] for u in better}) + 1
        return out


def assert_reads_agree(spec: BoardSpec, model: Model, players: list[User]) -> None:
    period = spec.period_at(BASE_TIME)
    expected_order, expected_ranks = model.order(), model.ranks()
    page = selectors.board_page(spec=spec, period=period, limit=100)
    assert page.source == "redis"
    assert [r.user_id for r in page.rows] == expected_order
    assert [r.rank for r in page.rows] == [expected_ranks[u] for u in expected_order]
    assert [r.score for r in page.rows] == [model.entries[u][0] for u in expected_order]
    assert page.total_players == len(expected_order)
    # The PostgreSQL path (what readers get while Redis is down) says the same.
    rows, _ = selectors._db_page(spec, period.key, limit=100)
    assert [(r.user_id, r.rank, r.score) for r in rows] == [(r.user_id, r.rank, r.score) for r in page.rows]
    for player in players:
        uid = str(player.pk)
        _, found = selectors.standings_of(spec=spec, period=period, user_ids=[uid])
        db = selectors._db_standings(spec, period.key, [uid], frozen=False)
        if uid in expected_ranks:
            assert found[uid].rank == db[uid].rank == expected_ranks[uid]
            assert found[uid].position == db[uid].position == expected_order.index(uid)
        else:
            assert uid not in found and uid not in db


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(board=boards, ops=submissions)
def test_redis_order_equals_postgres_order_on_random_boards(board, ops, mint, redis_client):
    sort, operator, tie = board
    redis_flush_test_database()
    clock = {"now": BASE_TIME}
    with (
        override_settings(**UNTHROTTLED),
        mock.patch("django.utils.timezone.now", lambda: clock["now"]),
        transaction.atomic(),
    ):
        Board.objects.create(id="prop", sort=sort, operator=operator, tie_policy=tie, period="daily")
        registry.boards_cache_clear()
        services.known_periods_clear()
        spec = registry.board_get("prop")
        assert spec is not None
        model = Model(sort, operator, tie)
        players = PlayerFactory.create_batch(PLAYERS)
        for index, value, step_us in ops:
            clock["now"] += dt.timedelta(microseconds=step_us)
            user = players[index]
            uid = str(user.pk)
            before = model.ranks()
            result = services.score_submit(user=user, action_token=mint(user, increment=value))
            model.submit(uid, value, clock["now"])
            on_board = next(b for b in result.boards if b.board == "prop")
            # The ranks the API answers are the player's places under the board's rules.
            assert on_board.old_rank == before.get(uid)
            assert on_board.new_rank == model.ranks()[uid]
            assert on_board.new_score == model.entries[uid][0]

        assert_reads_agree(spec, model, players)

        redis_flush_test_database()
        assert services.index_rebuild(spec=spec, period_key=spec.period_at(BASE_TIME).key) == len(model.entries)
        assert_reads_agree(spec, model, players)
        report = services.leaderboard_drift_check(board=spec)
        assert (report.missing, report.stale, report.extra) == (0, 0, 0)
        transaction.set_rollback(True)
    registry.boards_cache_clear()
    services.known_periods_clear()
