"""The process's Redis subscription survives a dropped connection, and sockets catch up."""

from __future__ import annotations

import pytest

from realtime.hub import HUB_CLIENT_NAME
from tests.realtime.test_consumer import connected, receive

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.redis]


def _kill_hub_connections(redis_client) -> int:
    db = redis_client.connection_pool.connection_kwargs.get("db", 0)
    killed = 0
    for client in redis_client.client_list():
        if client.get("name") == HUB_CLIENT_NAME and int(client.get("db", -1)) == db:
            killed += redis_client.client_kill_filter(_id=client["id"])
    return killed


async def test_updates_flow_again_after_the_subscription_is_cut(redis_client, player, score):
    ws = await connected()
    first = await receive(ws)
    assert _kill_hub_connections(redis_client) >= 1

    await score(player, 64)
    # Either the publish arrives on the new subscription, or the resync after reconnecting
    # brings the same board: the client ends up with the player's new score.
    while True:
        update = await receive(ws)
        assert update["type"] == "leaderboard_update" and update["seq"] >= first["seq"]
        if [(r["user_id"], r["score"]) for r in update["leaderboard"]] == [(str(player.pk), 64)]:
            break
    await ws.disconnect()
