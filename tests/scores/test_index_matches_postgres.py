"""What a score update writes into the Redis index is exactly what a rebuild from PostgreSQL writes:
same members (score, time reached to the microsecond, player), same versions. The update path reads
the times reached back from its own write statement (scores.services.SUBMIT_SQL); a time off by one
microsecond would order ties differently from the database and show as drift after a repair."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import redis as redis_lib
from django.test import override_settings

from accounts.models import User
from scores import services as score_services
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
