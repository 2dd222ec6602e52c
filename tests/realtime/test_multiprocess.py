"""Two real uvicorn processes against one PostgreSQL database and one Redis: a score submitted to
process B reaches a WebSocket and an SSE client connected to process A; the page renders without
JavaScript."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
import websockets

from accounts.models import User
from tests.conftest import access_token_for, in_worker_thread
from tests.factories import PlayerFactory
from tests.realtime.conftest import action_token
from tests.realtime.servers import Server

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.postgres,
    pytest.mark.redis,
    pytest.mark.slow,
]

RECEIVE_TIMEOUT = 10


def _player_with_token() -> tuple[User, str]:
    user = PlayerFactory.create()
    return user, access_token_for(user)


async def submit_to(server: Server, user: User, access: str, increment: int) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=server.http, timeout=RECEIVE_TIMEOUT) as client:
        response = await client.post(
            "/v1/scores/update",
            json={"action_token": action_token(user, increment)},
            headers={"Authorization": f"Bearer {access}"},
        )
    assert response.status_code == 200, response.text
    return response.json()["data"]


async def next_message(ws: Any, kind: str) -> dict[str, Any]:
    async with asyncio.timeout(RECEIVE_TIMEOUT):
        while True:
            msg = json.loads(await ws.recv())
            if msg["type"] == kind:
                return msg


async def test_websocket_on_a_gets_the_update_submitted_to_b(servers):
    process_a, process_b = servers
    player, access = await in_worker_thread(_player_with_token)()
    async with websockets.connect(f"{process_a.ws}/v1/realtime") as ws:
        snapshot = await next_message(ws, "leaderboard_update")
        assert snapshot["leaderboard"] == []
        await ws.send(json.dumps({"type": "auth", "token": access}))
        assert (await next_message(ws, "auth_ok"))["user_id"] == str(player.pk)

        await submit_to(process_b, player, access, 321)

        rank_update = await next_message(ws, "rank_update")
        assert (rank_update["user_id"], rank_update["rank"], rank_update["score"]) == (str(player.pk), 1, 321)
        update = await next_message(ws, "leaderboard_update")
        assert update["seq"] > snapshot["seq"]
        assert [(r["user_id"], r["score"]) for r in update["leaderboard"]] == [(str(player.pk), 321)]


async def test_sse_on_a_streams_the_update_submitted_to_b(servers):
    process_a, process_b = servers
    player, access = await in_worker_thread(_player_with_token)()
    first_score = await submit_to(process_b, player, access, 50)
    assert first_score["new_score"] == 50

    async with (
        httpx.AsyncClient(base_url=process_a.http, timeout=RECEIVE_TIMEOUT) as client,
        # A reconnecting client: whatever it saw last, it is sent the current board first.
        client.stream("GET", "/v1/leaderboard/stream", headers={"Last-Event-ID": "1"}) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = sse_events(response)
        async with asyncio.timeout(RECEIVE_TIMEOUT):
            current = await anext(events)
            assert current["event"] == "leaderboard_update"
            data = json.loads(current["data"])
            assert int(current["id"]) == data["seq"] > 1
            assert [(r["user_id"], r["score"]) for r in data["leaderboard"]] == [(str(player.pk), 50)]

            await submit_to(process_b, player, access, 25)
            pushed = await anext(events)
        data = json.loads(pushed["data"])
        assert int(pushed["id"]) == data["seq"] > int(current["id"])
        assert [(r["user_id"], r["score"]) for r in data["leaderboard"]] == [(str(player.pk), 75)]


async def sse_events(response: httpx.Response) -> Any:
    """Parse an event stream into {"id", "event", "data"} dicts (comments are keep-alives)."""
    event: dict[str, str] = {}
    async for line in response.aiter_lines():
        if not line:
            if "data" in event:
                yield event
            event = {}
        elif not line.startswith(":"):
            field, _, value = line.partition(":")
            event[field] = value.removeprefix(" ")


async def test_page_is_rendered_on_the_server(servers):
    process_a, process_b = servers
    player, access = await in_worker_thread(_player_with_token)()
    await submit_to(process_b, player, access, 77)
    async with httpx.AsyncClient(base_url=process_a.http, timeout=RECEIVE_TIMEOUT) as client:
        page = await client.get("/")
    assert page.status_code == 200
    # Without JavaScript the top 10 is already in the table.
    assert f'<tr data-user-id="{player.pk}">' in page.text
    assert player.username in page.text and ">77<" in page.text


def _weekly_board() -> None:
    from scores import board_services

    board_services.board_create(board_id="weekly", period="weekly", action_types=["LEVEL_COMPLETION"])


async def test_a_socket_on_a_subscribed_to_weekly_gets_the_update_submitted_to_b(servers):
    """Through real uvicorn processes (the pre-framed writer included): switch boards, then receive."""
    process_a, process_b = servers
    await in_worker_thread(_weekly_board)()
    player, access = await in_worker_thread(_player_with_token)()
    async with websockets.connect(f"{process_a.ws}/v1/realtime") as ws:
        assert (await next_message(ws, "leaderboard_update"))["board"] == "global"
        await ws.send(json.dumps({"type": "subscribe", "board": "weekly"}))
        assert (await next_message(ws, "subscribed"))["board"] == "weekly"
        first = await next_message(ws, "leaderboard_update")
        assert (first["board"], first["leaderboard"]) == ("weekly", [])

        result = await submit_to(process_b, player, access, 300)
        assert [b["board"] for b in result["boards"]] == ["global", "weekly"], result

        update = await next_message(ws, "leaderboard_update")
        assert update["board"] == "weekly"
        assert [(r["user_id"], r["score"]) for r in update["leaderboard"]] == [(str(player.pk), 300)]
