"""BoardSpec.period_at remembers the last period of each kind: any order of instants gets the period
computed from scratch, boundaries included."""

from __future__ import annotations

import datetime as dt

from hypothesis import given
from hypothesis import strategies as st

from scores.boards import ALL_TIME, CRON, DAILY, MONTHLY, WEEKLY, BoardSpec

T0 = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
SPECS = [
    BoardSpec(id="d", period=DAILY),
    BoardSpec(id="w", period=WEEKLY),
    BoardSpec(id="m", period=MONTHLY),
    BoardSpec(id="c", period=CRON, cron="0 */6 * * *"),
    BoardSpec(id="c2", period=CRON, cron="30 18 * * 5"),
    BoardSpec(id="a", period=ALL_TIME),
]
# Instants near period boundaries (midnights, six-hour marks) and anywhere in two months.
instants = st.one_of(
    st.integers(min_value=0, max_value=62 * 24).map(lambda h: T0 + dt.timedelta(hours=h)),
    st.tuples(st.integers(0, 62 * 24), st.sampled_from([-1, 0, 1])).map(
        lambda t: T0 + dt.timedelta(hours=t[0], microseconds=t[1])
    ),
    st.integers(min_value=0, max_value=62 * 86400 * 10**6).map(lambda us: T0 + dt.timedelta(microseconds=us)),
)


@given(st.lists(st.tuples(st.sampled_from(SPECS), instants), min_size=1, max_size=40))
def test_period_at_answers_what_a_fresh_computation_answers(asks: list[tuple[BoardSpec, dt.datetime]]) -> None:
    for spec, at in asks:
        period = spec.period_at(at)
        if spec.period == ALL_TIME:
            assert period.starts_at is None
            continue
        assert period == spec._period_containing(at)
        assert period.contains(at)
