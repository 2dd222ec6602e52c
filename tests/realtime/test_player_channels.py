"""Each player's own frames (rank updates, revocation) travel on a channel of that player's, which
only a process holding one of the player's sockets subscribes to: the rank update every score update
publishes costs the other processes nothing (PostgreSQL + Redis)."""

from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import sync_to_async

from realtime.hub import get_hub, player_channel
from tests.conftest import eventually
from tests.realtime.test_consumer import connected, ranked_players, receive, receive_until
from tests.realtime.test_hub_reconnect import _kill_hub_connections

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.redis]


def subscribers(redis_client, user) -> int:
    """How many connections subscribe to ``user``'s own channel (this test's one process: 0 or 1)."""
    channel = player_channel(str(user.pk))
    return dict(redis_client.pubsub_numsub(channel)).get(channel, 0)


async def signed_in(user, token_for):
    ws = await connected()
    await receive(ws)  # the snapshot
    await ws.send_json_to({"type": "auth", "token": await token_for(user)})
    assert await receive(ws) == {"type": "auth_ok", "user_id": str(user.pk)}
    return ws


async def test_a_players_channel_is_subscribed_while_a_socket_of_that_player_is_open(redis_client, token_for):
    alice, bob = await sync_to_async(ranked_players)([50, 40])
    spectator = await connected()
    await receive(spectator)
    assert (subscribers(redis_client, alice), subscribers(redis_client, bob)) == (0, 0)  # nobody's own frames

    first = await signed_in(alice, token_for)
    # Confirmed before auth_ok: a score sent right after signing in is heard.
    assert (subscribers(redis_client, alice), subscribers(redis_client, bob)) == (1, 0)
    second = await signed_in(alice, token_for)
    assert subscribers(redis_client, alice) == 1  # one subscription per process, however many sockets

    await first.disconnect()
    await asyncio.sleep(0.2)
    assert subscribers(redis_client, alice) == 1  # her other socket is still open
    await second.disconnect()
    assert await eventually(lambda: subscribers(redis_client, alice) == 0)
    await spectator.disconnect()


async def test_a_players_channel_is_subscribed_again_after_the_subscription_is_cut(
    redis_client, player, score, token_for
):
    ws = await signed_in(player, token_for)
    hub = get_hub()
    assert _kill_hub_connections(redis_client) >= 1
    assert subscribers(redis_client, player) == 0
    assert await eventually(lambda: not hub.subscription_alive)
    # The hub subscribes again, its players' channels in the same SUBSCRIBE as the board's, before it:
    # once the board's is confirmed (alive), so is the player's.
    assert await eventually(lambda: hub.subscription_alive)
    assert subscribers(redis_client, player) == 1
    await score(player, 64)
    rank_update = (await receive_until(ws, "rank_update", user_id=str(player.pk)))[-1]
    assert rank_update["score"] == 64
    await ws.disconnect()
