"""The write's board arrays, sent as PostgreSQL array literals, arrive as the values they were made of."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scoreboard import db
from scores.boards import DAILY, OP_BEST, OP_INCR, OP_SET, SORT_ASC, WEEKLY, BoardSpec
from scores.services import BoardWrite, _array_literal, board_arrays

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(connection.vendor != "postgresql", reason="the write statement is PostgreSQL's"),
]

# Any text PostgreSQL can hold (no NUL), quotes, backslashes, braces, commas and spaces included.
_ELEMENT = st.text(st.characters(exclude_characters="\x00", codec="utf-8"), max_size=12)


@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(_ELEMENT, max_size=5))
def test_a_text_array_literal_arrives_as_its_elements(values: list[str]) -> None:
    row = db.fetchone("SELECT %(a)s::text[]", {"a": _array_literal(values)})
    assert row is not None
    assert row[0] == values


def test_the_boards_of_a_write_arrive_as_the_statement_expects() -> None:
    at = dt.datetime(2026, 12, 3, 18, 0, tzinfo=dt.UTC)
    specs = [
        BoardSpec(id="global"),
        BoardSpec(id="speedrun-daily", sort=SORT_ASC, operator=OP_BEST, period=DAILY),
        BoardSpec(id="weekly", operator=OP_SET, period=WEEKLY),
    ]
    writes = [BoardWrite(spec, spec.period_at(at)) for spec in specs]
    row = db.fetchone(
        "SELECT %(b_ids)s::text[], %(b_periods)s::text[], %(b_ops)s::text[], %(b_high)s::boolean[]",
        board_arrays(writes),
    )
    assert row == (
        ["global", "speedrun-daily", "weekly"],
        [w.period.key for w in writes],
        [OP_INCR, OP_BEST, OP_SET],
        [True, False, True],
    )
    assert len(set(row[1])) == 3  # all-time, a day and a week: three different keys
