"""The realtime hub's Redis subscription is behind the same breaker as every other Redis client:
a hung Redis is noticed (a PING left unanswered), no reconnection is attempted while the circuit is
open, and after the thaw spectators get the board as PostgreSQL has it, updates made during the
hang included (they were committed, never broadcast)."""

from __future__ import annotations

import asyncio
import threading

import pytest
from asgiref.sync import sync_to_async
from django.test import override_settings

from realtime import hub as hub_module
from scoreboard import redis as scoreboard_redis
from tests.conftest import eventually, submit
from tests.realtime.test_consumer import connected, receive

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


def reconnect_hooks_running() -> bool:
    return any(t.name == "redis-reconnect-hooks" for t in threading.enumerate())


def attempts() -> float:
    return hub_module.SUBSCRIBE_ATTEMPTS._value.get()


@pytest.mark.django_db(transaction=True)
async def test_a_hung_redis_is_noticed_by_the_hub_and_the_board_is_whole_after_the_thaw(
    own_redis, make_player, client_for, mint, unthrottled, monkeypatch
):
    monkeypatch.setattr(hub_module, "IDLE_PING_SECONDS", 0.3)
    monkeypatch.setattr(hub_module, "PONG_TIMEOUT_SECONDS", 0.5)
    hub = hub_module.get_hub()
    breaker = scoreboard_redis.breaker_for_url(own_redis.url)
    assert breaker is not None

    def score(increment: int) -> int:
        return submit(client, mint(player, increment=increment)).status_code

    # Eager before anything touches the new Redis: its first connection finds it empty and queues a
    # repair from a background thread, which must run here (queued on the suite's broker, no worker
    # would run it, and its dedupe key would swallow the repair after the thaw).
    with override_settings(CELERY_TASK_ALWAYS_EAGER=True):  # the reconnect hook's repair runs in its thread
        player = await sync_to_async(make_player)()
        client = await sync_to_async(client_for)(player)
        ws = await connected()
        assert (await receive(ws))["leaderboard"] == []
        assert hub.subscription_alive
        # That first repair is done before the hang (one that the hang interrupts is a test of its own:
        # tests/realtime/test_publish_concurrency.py, a repair behind a dead publisher's lock).
        assert await eventually(lambda: not reconnect_hooks_running(), seconds=15)
        before = attempts()

        own_redis.freeze()
        try:
            assert await sync_to_async(score)(70) == 200  # committed on PostgreSQL; never published
            assert breaker.is_open
            # The hub's PING goes unanswered: it drops the subscription ...
            assert await eventually(lambda: not hub.subscription_alive, seconds=15)
            await asyncio.sleep(1.0)
            # ... and, the circuit being open, does not knock on the hung server again.
            assert attempts() == before
        finally:
            own_redis.thaw()

        # Back: the breaker closes, the hub subscribes again, the index is repaired, and the socket
        # gets the board with the update made during the hang, without any further update.
        assert await eventually(lambda: hub.subscription_alive and not breaker.is_open, seconds=20)
        assert attempts() > before
        async with asyncio.timeout(30):  # generous: a loaded box; the old code never gets there at all
            while True:
                update = await ws.receive_json_from(timeout=30)
                assert update["type"] == "leaderboard_update"
                if [(r["user_id"], r["score"]) for r in update["leaderboard"]] == [(str(player.pk), 70)]:
                    break
        await ws.disconnect()
