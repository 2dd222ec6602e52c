"""The spectator page and the SSE endpoint in-process (the real stream is read in test_multiprocess)."""

from __future__ import annotations

import datetime as dt

import pytest
from asgiref.sync import sync_to_async
from django.test import AsyncClient
from django.utils import timezone

from realtime.auth import ACCESS_COOKIE
from scores import services as score_services
from tests.conftest import access_token_for
from tests.factories import PlayerFactory

pytestmark = [pytest.mark.embedded]


def _ranked(username: str, score: int):
    player = PlayerFactory.create(
        username=username,
        current_score=score,
        score_reached_at=timezone.now() - dt.timedelta(minutes=5),
        score_version=1,
    )
    score_services.leaderboard_rebuild()
    return player


@pytest.mark.django_db
def test_page_renders_the_top_ten_without_javascript(client):
    for i in range(12):
        _ranked(f"runner{i:02d}", 100 + i)
    page = client.get("/")
    assert page.status_code == 200
    body = page.content.decode()
    assert body.count("<tr data-user-id=") == 10
    assert body.index("runner11") < body.index("runner10")  # best first
    assert "runner00" not in body and "runner01" not in body  # ranks 11 and 12 are not shown
    assert '<th scope="col">Rank</th>' in body and "<caption>" in body


@pytest.mark.django_db
def test_usernames_are_escaped_on_the_page(client):
    _ranked("<script>x</script>", 10)
    body = client.get("/").content.decode()
    assert "<script>x</script>" not in body
    assert "&lt;script&gt;x&lt;/script&gt;" in body


@pytest.mark.django_db
def test_private_page_asks_for_sign_in_and_accepts_the_cookie(client, settings, player):
    settings.LEADERBOARD_REQUIRE_AUTH = True
    _ranked("hidden_champion", 999)
    refused = client.get("/")
    assert refused.status_code == 401
    assert "hidden_champion" not in refused.content.decode()
    client.cookies[ACCESS_COOKIE] = access_token_for(player)
    shown = client.get("/")
    assert shown.status_code == 200
    assert "hidden_champion" in shown.content.decode()


@pytest.mark.django_db(transaction=True)
async def test_sse_sends_the_current_snapshot_first_whatever_the_last_event_id(db):
    await sync_to_async(_ranked)("streamer", 42)
    response = await AsyncClient().get("/v1/leaderboard/stream", headers={"Last-Event-ID": "12345"})
    assert response.status_code == 200
    assert response["Content-Type"] == "text/event-stream"
    assert response["Cache-Control"] == "no-cache"
    stream = response.streaming_content  # type: ignore[attr-defined]
    first = await anext(aiter(stream))
    assert b"event: leaderboard_update\n" in first
    assert b'"username":"streamer"' in first and b'"score":42' in first
    await stream.aclose()


@pytest.mark.django_db(transaction=True)
async def test_private_sse_without_token_is_a_json_401(settings):
    settings.LEADERBOARD_REQUIRE_AUTH = True
    response = await AsyncClient().get("/v1/leaderboard/stream")
    assert response.status_code == 401
    assert response.json()["success"] is False
    assert response.json()["error"]["code"] == "not_authenticated"


@pytest.mark.django_db(transaction=True)
async def test_sse_wrong_method_is_a_json_405():
    response = await AsyncClient(enforce_csrf_checks=True).post("/v1/leaderboard/stream")
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"
