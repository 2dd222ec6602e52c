"""The Redis index takes absolute, versioned scores: retries and out-of-order writes cannot corrupt it."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest

from scores.ranking import IndexEntry, redis_index

pytestmark = [pytest.mark.redis]

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def entry(user_id: str, score: int, version: int, seconds: int = 0) -> IndexEntry:
    at = T0 + dt.timedelta(seconds=seconds)
    return IndexEntry(
        user_id=user_id, username=f"p{version}", score=score, version=version, reached_at=at, last_updated=at
    )


def test_an_older_write_arriving_late_is_ignored():
    index = redis_index()
    assert index is not None
    uid = str(uuid.uuid4())
    assert index.apply(entry(uid, 300, version=3, seconds=3)).applied
    late = index.apply(entry(uid, 100, version=1, seconds=1))
    assert not late.applied
    assert index.apply(entry(uid, 300, version=3, seconds=3)).applied is False  # a retry is a no-op too
    assert index.rank_of(uid) == (1, 300)
    assert index.page(limit=10).total_players == 1


def test_ties_order_by_time_reached_then_user_id():
    index = redis_index()
    assert index is not None
    ids = sorted(str(uuid.uuid4()) for _ in range(3))
    index.apply(entry(ids[2], 50, version=1, seconds=1))  # same score, reached first
    index.apply(entry(ids[1], 50, version=1, seconds=2))
    index.apply(entry(ids[0], 50, version=1, seconds=2))  # same score and time: smaller id first
    index.apply(entry(str(uuid.uuid4()), 40, version=1))
    rows = index.page(limit=10).rows
    assert [r.user_id for r in rows[:3]] == [ids[2], ids[0], ids[1]]
    assert [index.rank_of(uid)[0] for uid in (ids[2], ids[0], ids[1])] == [1, 2, 3]
