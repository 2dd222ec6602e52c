"""What a score update writes into the Redis index is exactly what a rebuild from PostgreSQL writes:
same members (score, time reached to the microsecond, player), same versions. The update path reads
the times reached back from its own write statement (scores.services.SUBMIT_SQL); a time off by one
microsecond would order ties differently from the database and show as drift after a repair."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
import redis as redis_lib
from django.test import override_settings
from django.utils import timezone

from accounts.models import User
from scores import registry, selectors
from scores import services as score_services
from scores.models import BoardEntry
from scores.ranking import redis_index
from tests.conftest import submit
from tests.scores.conftest import UNTHROTTLED

pytestmark = [pytest.mark.redis]


def index_state(client: redis_lib.Redis) -> dict[str, Any]:
    state: dict[str, Any] = {}
    for spec, period_key in score_services.live_periods():
        index = redis_index(spec, period_key)
        assert index is not None
        z, m = index.keys[0], index.keys[1]
        state[f"{spec.id}/{period_key}"] = (client.zrange(z, 0, -1, withscores=True), client.hgetall(m))
    return state


@pytest.mark.django_db(transaction=True)  # autocommit, as in production: the one-statement write
@override_settings(**UNTHROTTLED)
def test_the_index_an_update_writes_is_the_one_postgresql_rebuilds(
    make_player: Callable[..., User], client_for: Any, mint: Any, redis_client: redis_lib.Redis, three_boards: None
) -> None:
    players = [make_player() for _ in range(3)]
    for round_, increment in enumerate((30, 20, 10)):
        for n, player in enumerate(players):
            # Equal totals after the rounds make the time reached decide the order (ties).
            response = submit(client_for(player), mint(player, increment=increment + (n - 1) * (round_ - 1)))
            assert response.status_code == 200, response.content
    written = index_state(redis_client)
    assert len(written) == 3 and all(len(z) == 3 for z, _ in written.values())
    for spec, period_key in score_services.live_periods():
        assert score_services.index_rebuild(spec=spec, period_key=period_key) == 3
    assert index_state(redis_client) == written


@pytest.mark.django_db(transaction=True)
@override_settings(**UNTHROTTLED)
def test_a_rebuild_keeps_an_update_that_read_its_clock_before_the_start_and_committed_after_the_read(
    make_player: Callable[..., User], client_for: Any, mint: Any, redis_client: redis_lib.Redis, monkeypatch: Any
) -> None:
    """The race behind a lost entry: an update's ``updated_at`` is its clock, read before its write
    commits. Committed after the rebuild's read of PostgreSQL (so not in it), indexed before the
    rebuild replaced the index (so overwritten), stamped before the rebuild started (so not in a
    re-apply of "changed since the start"), it would vanish from the board until the drift check."""
    players = [make_player() for _ in range(3)]
    for n, player in enumerate(players):
        assert submit(client_for(player), mint(player, increment=10 * (n + 1))).status_code == 200
    late = players[1]
    BoardEntry.objects.filter(user=late).update(updated_at=timezone.now() - dt.timedelta(seconds=2))
    read = selectors.index_entries

    def read_before_the_late_commit(**kwargs: Any) -> Any:
        return [entry for entry in read(**kwargs) if entry.user_id != str(late.id)]

    monkeypatch.setattr(selectors, "index_entries", read_before_the_late_commit)
    spec = registry.board_get("global")
    assert spec is not None
    period_key = spec.period_at(timezone.now()).key
    written = index_state(redis_client)
    assert score_services.index_rebuild(spec=spec, period_key=period_key) == 2  # the read missed one
    assert index_state(redis_client) == written  # ... and the re-apply put it back
