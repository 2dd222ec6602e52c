"""A live board over WebSocket with every Redis caller on a real 3-node Redis Cluster.

The hub subscribes to one node (``scoreboard.redis.pubsub_url``) while the publish script runs on the
node that owns the board's slot: a classic PUBLISH crosses the cluster bus to every node.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
from channels.testing import WebsocketCommunicator

from realtime import hub
from scoreboard.asgi import application
from scores.ranking import index_keys
from tests.conftest import use_redis

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.redis]

RECEIVE_TIMEOUT = 5


async def test_a_score_is_pushed_to_a_socket_through_the_cluster(
    on_cluster: Any, settings: Any, player: Any, score: Any
) -> None:
    board_node = on_cluster.owner_of(index_keys("global", "all")[0])
    # The hub subscribes to the node at (its pid) in the URL's list: make it one that does not own the board.
    others = [p for p in on_cluster.ports if p != board_node]
    ports = list(others)
    ports.insert((os.getpid() + 1) % len(on_cluster.ports), board_node)
    use_redis(settings, "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in ports))
    subscribed = int(hub.pubsub_url(os.getpid()).rsplit(":", 1)[1].split("/")[0])
    assert subscribed != board_node
    ws = WebsocketCommunicator(application, "/v1/realtime")
    ok, _ = await ws.connect()
    assert ok
    try:
        first = await ws.receive_json_from(timeout=RECEIVE_TIMEOUT)
        assert first["type"] == "leaderboard_update" and first["leaderboard"] == []
        await score(player, 120)
        update = await ws.receive_json_from(timeout=RECEIVE_TIMEOUT)
        assert update["type"] == "leaderboard_update"
        assert update["seq"] > first["seq"]
        assert [(r["user_id"], r["score"], r["rank"]) for r in update["leaderboard"]] == [(str(player.pk), 120, 1)]
    finally:
        await ws.disconnect()
