"""Racing publishers (PostgreSQL + Redis; SQLite's in-memory test database cannot take the writes)."""

from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import sync_to_async

from scores.selectors import leaderboard_top
from tests.realtime.test_consumer import connected, ranked_players, receive

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres, pytest.mark.redis]


async def test_concurrent_updates_end_on_the_final_board(score):
    """Publishers race; the coalescing publish must still leave every client on the latest board."""
    players = await sync_to_async(ranked_players)([100 + i for i in range(8)])
    ws = await connected()
    last = await receive(ws)
    await asyncio.gather(*(score(p, 50 + 7 * i) for i, p in enumerate(players)))
    final = await sync_to_async(leaderboard_top)(limit=10)
    expected = [(r.user_id, r.score) for r in final.rows]
    assert len(expected) == 8
    while [(r["user_id"], r["score"]) for r in last["leaderboard"]] != expected:
        update = await receive(ws)  # times out (fails) if the final board never arrives
        assert update["seq"] > last["seq"]
        last = update
    await ws.disconnect()
