"""WS /v1/realtime through channels' WebsocketCommunicator, against the real ASGI application.

With REDIS_URL these exercise the Redis path (publish → pub/sub → this process's hub); in
``make test-embedded`` the same tests exercise the in-process hand-off.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.utils import timezone

from accounts.models import User
from realtime.consumers import CLOSE_TOO_BIG, CLOSE_UNAUTHORIZED, MAX_INBOUND_BYTES
from scoreboard.asgi import application
from scores import services as score_services
from tests.factories import PlayerFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.embedded]

RECEIVE_TIMEOUT = 5


async def connected(**kwargs: Any) -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(application, "/v1/realtime", **kwargs)
    ok, _ = await communicator.connect()
    assert ok
    return communicator


async def receive(communicator: WebsocketCommunicator) -> dict[str, Any]:
    return await communicator.receive_json_from(timeout=RECEIVE_TIMEOUT)


async def receive_until(communicator: WebsocketCommunicator, kind: str, **match: Any) -> list[dict[str, Any]]:
    """Messages up to and including the first of ``kind`` whose fields equal ``match``."""
    seen = []
    while True:
        msg = await receive(communicator)
        seen.append(msg)
        if msg["type"] == kind and all(msg.get(k) == v for k, v in match.items()):
            return seen


def ranked_players(scores: list[int]) -> list[User]:
    """Players already on the board with these scores (earlier players reached theirs first)."""
    base = timezone.now() - dt.timedelta(hours=1)
    players = [
        PlayerFactory.create(current_score=s, score_reached_at=base + dt.timedelta(seconds=i), score_version=1)
        for i, s in enumerate(scores)
    ]
    score_services.leaderboard_rebuild()
    return players


async def test_snapshot_on_connect():
    alice, bob = await sync_to_async(ranked_players)([500, 300])
    ws = await connected()
    snapshot = await receive(ws)
    assert snapshot["type"] == "leaderboard_update"
    assert [(r["rank"], r["username"], r["score"]) for r in snapshot["leaderboard"]] == [
        (1, alice.username, 500),
        (2, bob.username, 300),
    ]
    assert snapshot["leaderboard"][0]["user_id"] == str(alice.pk)
    assert snapshot["total_players"] == 2
    assert isinstance(snapshot["seq"], int)
    assert snapshot["last_updated"]
    await ws.disconnect()


async def test_score_change_is_pushed_with_a_newer_seq(player, score):
    ws = await connected()
    first = await receive(ws)
    assert first["leaderboard"] == []

    await score(player, 120)
    update = await receive(ws)
    assert update["type"] == "leaderboard_update"
    assert update["seq"] > first["seq"]
    assert [(r["user_id"], r["score"], r["rank"]) for r in update["leaderboard"]] == [(str(player.pk), 120, 1)]
    assert update["total_players"] == 1
    assert isinstance(update["published_at"], float)
    await ws.disconnect()


async def test_no_push_when_the_top_ten_did_not_change(score):
    players = await sync_to_async(ranked_players)([1000 - 10 * i for i in range(12)])
    ws = await connected()
    snapshot = await receive(ws)
    outsider, leader = players[-1], players[0]

    await score(outsider, 1)  # rank 12 -> 12: the top 10 is untouched
    await score(leader, 5)  # the leader's score changes: that is pushed
    update = await receive(ws)
    # The very next frame is the leader's change: nothing was sent for the outsider.
    assert (update["leaderboard"][0]["user_id"], update["leaderboard"][0]["score"]) == (str(leader.pk), 1005)
    assert update["seq"] > snapshot["seq"]
    assert update["total_players"] == 12
    await ws.disconnect()


async def test_auth_ok_and_rank_update_only_to_its_own_player(score, token_for):
    alice, bob = await sync_to_async(ranked_players)([50, 40])
    ws_alice, ws_bob = await connected(), await connected()
    await receive(ws_alice)
    await receive(ws_bob)
    await ws_alice.send_json_to({"type": "auth", "token": await token_for(alice)})
    await ws_bob.send_json_to({"type": "auth", "token": await token_for(bob)})
    assert await receive(ws_alice) == {"type": "auth_ok", "user_id": str(alice.pk)}
    assert await receive(ws_bob) == {"type": "auth_ok", "user_id": str(bob.pk)}

    result = await score(bob, 100)  # bob 140 overtakes alice
    to_bob = await receive_until(ws_bob, "rank_update")
    rank_update = to_bob[-1]
    assert {k: rank_update[k] for k in ("user_id", "rank", "old_rank", "score")} == {
        "user_id": str(bob.pk),
        "rank": 1,
        "old_rank": result["old_rank"],  # the same ranks the API answered
        "score": 140,
    }
    await receive_until(ws_bob, "leaderboard_update")

    await score(alice, 200)
    # Alice sees the board change and her own update; never bob's rank_update.
    to_alice = await receive_until(ws_alice, "rank_update", user_id=str(alice.pk))
    assert [m["user_id"] for m in to_alice if m["type"] == "rank_update"] == [str(alice.pk)]
    assert any(m["type"] == "leaderboard_update" and m["leaderboard"][0]["user_id"] == str(bob.pk) for m in to_alice)
    # And bob, after alice's change, still gets no rank_update of hers.
    to_bob = await receive_until(ws_bob, "leaderboard_update")
    assert all(m["type"] != "rank_update" for m in to_bob)
    assert to_bob[-1]["leaderboard"][0]["user_id"] == str(alice.pk)
    await ws_alice.disconnect()
    await ws_bob.disconnect()


async def test_bad_token_closes_with_4401(db):
    ws = await connected()
    await receive(ws)
    await ws.send_json_to({"type": "auth", "token": "not-a-jwt"})
    error = await receive(ws)
    assert error["type"] == "error" and error["code"] == "invalid_token"
    closed = await ws.receive_output(timeout=RECEIVE_TIMEOUT)
    assert closed == {"type": "websocket.close", "code": CLOSE_UNAUTHORIZED}
    await ws.disconnect()


async def test_garbage_and_unknown_messages_get_errors_not_a_crash(db):
    ws = await connected()
    await receive(ws)
    await ws.send_to(text_data="{not json")
    assert (await receive(ws))["code"] == "invalid_json"
    await ws.send_to(text_data="[1, 2]")
    assert (await receive(ws))["code"] == "invalid_message"
    await ws.send_json_to({"type": "subscribe", "board": "no-such-board"})
    assert (await receive(ws))["code"] == "unknown_board"
    await ws.send_json_to({"type": "watch", "board": "weekly"})
    assert (await receive(ws))["code"] == "unknown_type"
    await ws.send_to(bytes_data=b"\x00\x01")
    assert (await receive(ws))["code"] == "invalid_message"
    await ws.send_json_to({"type": "ping"})
    assert await receive(ws) == {"type": "pong"}
    await ws.disconnect()


async def test_oversized_frame_closes_with_1009(db):
    ws = await connected()
    await receive(ws)
    await ws.send_to(text_data='{"type": "ping", "pad": "' + "x" * MAX_INBOUND_BYTES + '"}')
    assert await ws.receive_output(timeout=RECEIVE_TIMEOUT) == {"type": "websocket.close", "code": CLOSE_TOO_BIG}
    await ws.disconnect()


async def test_flooding_client_is_refused_then_disconnected(db):
    ws = await connected()
    await receive(ws)
    for _ in range(60):
        await ws.send_json_to({"type": "ping"})
    messages = []
    while True:
        out = await ws.receive_output(timeout=RECEIVE_TIMEOUT)
        if out["type"] == "websocket.close":
            assert out["code"] == 1008
            break
        messages.append(out["text"])
    assert any('"rate_limited"' in m for m in messages)
    await ws.disconnect()


async def test_foreign_origin_is_refused_and_allowed_origin_accepted(db):
    foreign = WebsocketCommunicator(application, "/v1/realtime", headers=[(b"origin", b"https://evil.example")])
    ok, _ = await foreign.connect()
    assert not ok
    same = await connected(headers=[(b"origin", b"http://127.0.0.1:8000"), (b"host", b"127.0.0.1:8000")])
    assert (await receive(same))["type"] == "leaderboard_update"
    await same.disconnect()


async def test_private_board_needs_a_read_token(settings, player, token_for):
    settings.LEADERBOARD_REQUIRE_AUTH = True
    ws = await connected()
    # Nothing is shown before authentication.
    assert await ws.receive_nothing(timeout=0.2)
    await ws.send_json_to({"type": "auth", "token": await token_for(player)})
    assert (await receive(ws))["type"] == "auth_ok"
    assert (await receive(ws))["type"] == "leaderboard_update"
    await ws.disconnect()


def _ban(user: User) -> None:
    User.objects.filter(pk=user.pk).update(is_active=False)
    score_services.player_standing_changed(user_id=str(user.pk))


async def test_a_banned_leader_leaves_the_live_board(db):
    cheater, honest = await sync_to_async(ranked_players)([9000, 200])
    ws = await connected()
    assert (await receive(ws))["leaderboard"][0]["user_id"] == str(cheater.pk)
    await sync_to_async(_ban)(cheater)
    update = await receive(ws)
    assert [r["user_id"] for r in update["leaderboard"]] == [str(honest.pk)]
    assert update["leaderboard"][0]["rank"] == 1
    await ws.disconnect()


def _short_lived_token(user: User, seconds: int) -> str:
    from datetime import timedelta

    from rest_framework_simplejwt.tokens import AccessToken

    token = AccessToken.for_user(user)
    token["scope"] = ["read:scores"]
    token.set_exp(lifetime=timedelta(seconds=seconds))
    return str(token)


async def test_private_board_closes_the_socket_when_its_token_expires(settings, player):
    settings.LEADERBOARD_REQUIRE_AUTH = True
    ws = await connected()
    # 3 s: long enough for the snapshot to go out first on a loaded box (1 s lost that race under
    # a full suite at load 4.5), well within RECEIVE_TIMEOUT for the expiry itself.
    await ws.send_json_to({"type": "auth", "token": await sync_to_async(_short_lived_token)(player, 3)})
    assert (await receive(ws))["type"] == "auth_ok"
    assert (await receive(ws))["type"] == "leaderboard_update"
    assert (await receive(ws))["code"] == "token_expired"
    assert await ws.receive_output(timeout=RECEIVE_TIMEOUT) == {"type": "websocket.close", "code": CLOSE_UNAUTHORIZED}
    await ws.disconnect()


def _board(board_id: str, **fields: Any) -> None:
    from scores import board_services, registry

    board_services.board_create(board_id=board_id, **fields)
    registry.boards_cache_clear()


async def test_a_socket_subscribes_to_a_board_and_gets_only_that_board(player, score):
    await sync_to_async(_board)("weekly", title="This week", period="weekly")
    await sync_to_async(_board)("laps", sort="asc", operator="best", action_types=["LAP_TIME"])
    on_global, on_weekly = await connected(), await connected()
    assert (await receive(on_global))["board"] == "global"
    assert (await receive(on_weekly))["board"] == "global"  # every socket starts on global
    await on_weekly.send_json_to({"type": "subscribe", "board": "weekly"})
    assert await receive(on_weekly) == {"type": "subscribed", "board": "weekly"}
    snapshot = await receive(on_weekly)
    assert (snapshot["type"], snapshot["board"], snapshot["leaderboard"]) == ("leaderboard_update", "weekly", [])
    assert snapshot["period"].count("-W") == 1

    await score(player, 120)  # feeds global and weekly: one snapshot for each board's sockets

    weekly = await receive(on_weekly)
    assert (weekly["board"], weekly["period"]) == ("weekly", snapshot["period"])
    assert [(r["user_id"], r["score"]) for r in weekly["leaderboard"]] == [(str(player.pk), 120)]
    glob = await receive(on_global)
    assert (glob["board"], glob["period"]) == ("global", "all")
    # Nothing else arrives: the weekly socket never sees the global board's frame.
    assert await on_weekly.receive_nothing(timeout=0.5)
    await on_global.disconnect()
    await on_weekly.disconnect()


async def test_rank_updates_carry_the_board(player, score, token_for):
    await sync_to_async(_board)("weekly", period="weekly")
    ws = await connected()
    await receive(ws)
    await ws.send_json_to({"type": "auth", "token": await token_for(player)})
    assert (await receive(ws))["type"] == "auth_ok"
    await score(player, 50)
    updates: list[dict[str, Any]] = []
    while len(updates) < 2:
        message = await receive(ws)
        if message["type"] == "rank_update":
            updates.append(message)
    assert sorted(u["board"] for u in updates) == ["global", "weekly"]
    assert all(u["rank"] == 1 and u["score"] == 50 for u in updates)
    await ws.disconnect()


async def test_a_closing_socket_does_not_queue_for_the_sync_thread(monkeypatch):
    # channels' websocket_disconnect runs aclose_old_connections (a hop to the single sync thread) per
    # socket: thousands of closes queued behind each other. The consumer touches no database there.
    import channels.generic.websocket

    hops = []

    async def counted() -> None:
        hops.append(1)

    monkeypatch.setattr(channels.generic.websocket, "aclose_old_connections", counted)
    ws = await connected()
    await receive(ws)
    await ws.disconnect()
    assert hops == []
