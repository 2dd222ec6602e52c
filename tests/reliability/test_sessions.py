"""Revocable sessions: a per-player token epoch checked on every authenticated request (from the
row authentication reads anyway), raised by a password change, a ban and "sign out everywhere";
a ban closes the player's open sockets; refresh tokens have an absolute lifetime; expired
outstanding tokens are purged."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from typing import Any

import pytest
from channels.testing import WebsocketCommunicator
from django.test import override_settings
from django.utils import timezone
from rest_framework.test import APIClient, APIRequestFactory
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken
from rest_framework_simplejwt.tokens import RefreshToken

from accounts import services
from accounts.admin import PlayerPasswordChangeForm
from accounts.authentication import ScopedJWTAuthentication
from accounts.models import User
from accounts.tasks import outstanding_tokens_purge_task
from fraud import services as fraud_services
from fraud.models import FraudLog
from scoreboard.asgi import application
from tests.factories import PLAYER_PASSWORD, PlayerFactory

pytestmark = [pytest.mark.embedded]


def login(client: APIClient, user: User) -> dict[str, Any]:
    response = client.post("/v1/auth/login", {"username": user.username, "password": PLAYER_PASSWORD}, format="json")
    assert response.status_code == 200, response.content
    return dict(response.json()["data"])


def me(client: APIClient, access: str) -> Any:
    return client.get("/v1/auth/me", HTTP_AUTHORIZATION=f"Bearer {access}")


def refresh(client: APIClient, token: str) -> Any:
    return client.post("/v1/auth/refresh", {"refresh": token}, format="json")


@pytest.mark.django_db
def test_sign_out_everywhere_revokes_every_token_issued_before(api_client, player):
    phone, laptop = login(api_client, player), login(api_client, player)
    assert me(api_client, phone["access"]).status_code == 200

    response = api_client.post("/v1/auth/logout-all", HTTP_AUTHORIZATION=f"Bearer {laptop['access']}")

    assert response.status_code == 200 and response.json()["data"] == {"signed_out": True}
    for session in (phone, laptop):
        refused = me(api_client, session["access"])
        assert refused.status_code == 401
        assert refused.json()["error"]["code"] == "session_revoked"
        assert refresh(api_client, session["refresh"]).json()["error"]["code"] == "session_revoked"
    fresh = login(api_client, player)
    assert me(api_client, fresh["access"]).status_code == 200
    assert api_client.post("/v1/auth/logout-all").status_code == 401  # needs a token


@pytest.mark.django_db
def test_a_password_change_signs_the_player_out(api_client, player):
    session = login(api_client, player)
    form = PlayerPasswordChangeForm(player, {"password1": "a-new-Passw0rd!x", "password2": "a-new-Passw0rd!x"})
    assert form.is_valid(), form.errors
    form.save()

    assert me(api_client, session["access"]).json()["error"]["code"] == "session_revoked"
    assert refresh(api_client, session["refresh"]).status_code == 401
    player.refresh_from_db()
    assert player.token_epoch == 1


@pytest.mark.django_db
def test_the_epoch_check_costs_no_query_of_its_own(player, monkeypatch):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from scoreboard import db

    prepared: list[str] = []  # the statements run on PostgreSQL outside Django's cursor (scoreboard/db.py)
    original = db.fetchone

    def counted(sql: str, params: Any) -> Any:
        prepared.append(sql)
        return original(sql, params)

    monkeypatch.setattr(db, "fetchone", counted)
    access = services.player_tokens_issue(user=player).access
    request = APIRequestFactory().get("/v1/auth/me", HTTP_AUTHORIZATION=f"Bearer {access}")
    with CaptureQueriesContext(connection) as orm:
        user, _token = ScopedJWTAuthentication().authenticate(request)  # type: ignore[misc]
    assert user == player
    assert len(orm.captured_queries) + len(prepared) == 1  # the player's row, which carries the epoch


@pytest.mark.django_db
@override_settings(JWT_SESSION_MAX_LIFETIME=dt.timedelta(days=1))
def test_refresh_tokens_have_an_absolute_lifetime(api_client, player, monkeypatch):
    session = login(api_client, player)
    issued = RefreshToken(session["refresh"])
    assert issued["exp"] <= issued["auth_time"] + 86400  # capped below JWT_REFRESH_DAYS (7)

    rotated = refresh(api_client, session["refresh"]).json()["data"]
    again = RefreshToken(rotated["refresh"])
    assert again["auth_time"] == issued["auth_time"]  # rotation keeps the session's start
    assert again["exp"] <= issued["auth_time"] + 86400

    later = time.time() + 2 * 86400
    monkeypatch.setattr(services.time, "time", lambda: later)
    expired = refresh(api_client, rotated["refresh"])
    assert expired.status_code == 401
    assert expired.json()["error"]["code"] == "session_expired"


@pytest.mark.django_db
def test_expired_outstanding_and_blacklisted_tokens_are_purged(api_client, player):
    session = login(api_client, player)
    refresh(api_client, session["refresh"])  # the first refresh token is now blacklisted
    assert OutstandingToken.objects.count() == 2 and BlacklistedToken.objects.count() == 1
    jti = RefreshToken(session["refresh"], verify=False)["jti"]
    assert OutstandingToken.objects.filter(jti=jti).update(expires_at=timezone.now() - dt.timedelta(1)) == 1

    assert outstanding_tokens_purge_task.apply().get() == 2  # the token and its blacklist row
    assert OutstandingToken.objects.count() == 1 and BlacklistedToken.objects.count() == 0


async def _socket_of(access: str) -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(application, "/v1/realtime")
    connected, _ = await communicator.connect()
    assert connected
    await communicator.send_json_to({"type": "auth", "token": access})
    while (await communicator.receive_json_from(timeout=5))["type"] != "auth_ok":
        pass
    return communicator


async def _closed_with(communicator: WebsocketCommunicator) -> tuple[list[str], int]:
    codes: list[str] = []
    while True:
        output = await communicator.receive_output(timeout=5)
        if output["type"] == "websocket.close":
            return codes, int(output.get("code", 0))
        if output["type"] == "websocket.send" and '"type":"error"' in (output.get("text") or ""):
            codes.append("error:" + output["text"].split('"code":"', 1)[1].split('"', 1)[0])


@pytest.mark.django_db(transaction=True)
async def test_a_ban_closes_the_players_open_sockets() -> None:
    from asgiref.sync import sync_to_async

    cheater, honest, moderator = await sync_to_async(lambda: [PlayerFactory.create() for _ in range(3)])()
    cheater_ws = await _socket_of(await sync_to_async(lambda: services.player_tokens_issue(user=cheater).access)())
    honest_ws = await _socket_of(await sync_to_async(lambda: services.player_tokens_issue(user=honest).access)())

    def ban() -> None:
        log = FraudLog.objects.create(user=cheater, event_type="test", risk_score=1)
        fraud_services.fraud_log_confirm(fraud_log=log, moderator=moderator, reason="test ban")

    await sync_to_async(ban)()

    assert await _closed_with(cheater_ws) == (["error:session_revoked"], 4401)
    # The others stay connected.
    await honest_ws.send_json_to({"type": "ping"})
    while (await honest_ws.receive_json_from(timeout=5))["type"] != "pong":
        pass
    await honest_ws.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_a_revocation_ends_the_players_event_stream(player) -> None:
    """SSE: the stream gets the session_revoked event and then ends (EventSource would otherwise
    keep a revoked player's stream open until its token expired)."""
    from asgiref.sync import sync_to_async
    from django.test import AsyncClient

    access = await sync_to_async(lambda: services.player_tokens_issue(user=player).access)()
    response = await AsyncClient().get("/v1/leaderboard/stream", headers={"Authorization": f"Bearer {access}"})
    assert response.status_code == 200
    stream = aiter(response.streaming_content)  # type: ignore[attr-defined]
    assert b"leaderboard_update" in await anext(stream)

    await sync_to_async(lambda: services.player_sessions_revoke(user_id=str(player.pk), reason="test"))()

    events = []
    async with asyncio.timeout(10):
        async for chunk in stream:  # ends by itself, or the timeout fails the test
            events.append(chunk)
    assert any(b'"code":"session_revoked"' in chunk for chunk in events)
