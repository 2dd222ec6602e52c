"""Every failure under /v1/ is the JSON error envelope with the documented status — never HTML, never a 500."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.conf import settings
from django.test import Client

from tests.conftest import submit

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]

LOGIN = "/v1/auth/login"


@pytest.fixture
def client() -> Client:
    return Client()


def envelope(response: Any, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json")
    body = json.loads(response.content)
    assert body["success"] is False
    assert set(body["error"]) == {"code", "message", "details"}
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert "Traceback" not in response.content.decode()
    if code is not None:
        assert body["error"]["code"] == code
    return body["error"]


@pytest.mark.parametrize(
    "body",
    [
        "{bad json",
        '{"username": "x", "password": ',
        '{"username": NaN, "password": "x"}',
        b'{"username": "\xff\xfe", "password": "x"}',
        "[" * 20000 + "]" * 20000,  # deeper than the decoder's recursion limit
    ],
)
def test_malformed_json_is_400(client, body):
    envelope(client.post(LOGIN, data=body, content_type="application/json"), 400, "malformed_json")


@pytest.mark.parametrize("body", ["[]", '"text"', "42", "null"])
def test_json_that_is_not_an_object_is_400(client, body):
    envelope(client.post(LOGIN, data=body, content_type="application/json"), 400)


@pytest.mark.parametrize(
    "body",
    [
        {"username": 123, "password": "a-long-pass-phrase"},
        {"username": ["alice"], "password": "a-long-pass-phrase"},
        {"username": "alice", "password": {"x": 1}},
        {"username": True, "password": "a-long-pass-phrase"},
    ],
)
def test_wrong_types_are_400(client, body):
    error = envelope(client.post(LOGIN, data=body, content_type="application/json"), 400, "invalid_request")
    assert set(error["details"]) <= {"username", "password"}


def test_wrong_types_in_the_score_update_are_400(auth_client, player, mint):
    token = mint(player)
    envelope(auth_client.post("/v1/scores/update", {"action_token": 12345}, format="json"), 400)
    envelope(submit(auth_client, token, metadata="LEVEL_COMPLETION"), 400)
    envelope(submit(auth_client, token, metadata={"action_type": "BOSS_KILL"}), 400)
    envelope(submit(auth_client, token, metadata={"level_id": "x" * (settings.LEVEL_ID_MAX_LENGTH + 1)}), 400)
    envelope(submit(auth_client, token, metadata={"level_id": 42}), 400)
    player.refresh_from_db()
    assert player.current_score == 0
    assert submit(auth_client, token, metadata={"level_id": "level_42"}).status_code == 200


def test_unknown_fields_are_400(client, auth_client, player, mint):
    error = envelope(
        client.post(LOGIN, data={"username": "a", "password": "b", "admin": True}, content_type="application/json"),
        400,
    )
    assert error["details"] == {"admin": ["Unknown field."]}
    envelope(submit(auth_client, mint(player), score_increment=1000), 400)
    envelope(submit(auth_client, mint(player), metadata={"level_id": "1", "bonus": 5}), 400)
    player.refresh_from_db()
    assert player.current_score == 0


def test_body_over_64kb_is_413(client, auth_client):
    big = json.dumps({"username": "x" * (settings.MAX_REQUEST_BODY_BYTES + 1), "password": "y"})
    envelope(client.post(LOGIN, data=big, content_type="application/json"), 413, "payload_too_large")
    envelope(auth_client.post("/v1/scores/update", {"action_token": "a" * 70_000}, format="json"), 413)


def test_body_just_under_the_limit_is_read(client):
    # Same endpoint, a large but allowed body: the limit is the only reason for the 413 above.
    body = json.dumps({"username": "x" * 60_000, "password": "y"})
    envelope(client.post(LOGIN, data=body, content_type="application/json"), 400, "invalid_request")


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "application/xml"])
def test_wrong_content_type_is_415(client, content_type):
    body = '{"username": "a", "password": "b"}'
    envelope(client.post(LOGIN, data=body, content_type=content_type), 415, "unsupported_media_type")


@pytest.mark.parametrize("path", ["/v1/nope", "/v1/scores", "/v1/leaderboard/", "/v1/auth/login/extra", "/v1/"])
def test_unknown_v1_route_is_json_404(client, path):
    envelope(client.get(path), 404, "not_found")
    envelope(client.post(path, data="{}", content_type="application/json"), 404, "not_found")


@pytest.mark.parametrize(
    ("method", "path"),
    [("delete", "/v1/leaderboard"), ("post", "/v1/leaderboard"), ("get", LOGIN), ("put", "/v1/auth/register")],
)
def test_wrong_method_is_json_405(client, method, path):
    envelope(getattr(client, method)(path), 405, "method_not_allowed")


def test_wrong_method_on_an_authenticated_endpoint_is_405(auth_client):
    envelope(auth_client.get("/v1/scores/update"), 405, "method_not_allowed")


@pytest.mark.parametrize("limit", ["abc", "0", "-1", "5.5", "1e3", " ", " 5", "+5", "١٢", "9" * 5000])
def test_bad_limit_is_400(client, limit):
    envelope(client.get("/v1/leaderboard", {"limit": limit}), 400, "invalid_limit")


def test_limit_is_clamped_to_100(client, make_player):
    from django.utils import timezone

    for i in range(settings.LEADERBOARD_MAX_LIMIT + 5):
        make_player(current_score=i + 1, score_reached_at=timezone.now())
    from scores.services import leaderboard_rebuild

    leaderboard_rebuild()
    default = client.get("/v1/leaderboard").json()["data"]
    assert len(default["leaderboard"]) == settings.LEADERBOARD_DEFAULT_LIMIT
    clamped = client.get("/v1/leaderboard", {"limit": 1000}).json()["data"]
    assert len(clamped["leaderboard"]) == settings.LEADERBOARD_MAX_LIMIT
    assert clamped["total_players"] == settings.LEADERBOARD_MAX_LIMIT + 5
    assert [row["rank"] for row in clamped["leaderboard"]] == list(range(1, settings.LEADERBOARD_MAX_LIMIT + 1))
    assert len(client.get("/v1/leaderboard", {"limit": 3}).json()["data"]["leaderboard"]) == 3
    assert len(client.get("/v1/leaderboard", {"limit": "9" * 30}).json()["data"]["leaderboard"]) == 100


def test_non_api_pages_keep_html_errors(client):
    response = client.get("/no-such-page")
    assert response.status_code == 404
    assert not response["Content-Type"].startswith("application/json")


def test_unexpected_error_is_a_json_500_without_a_traceback(client, monkeypatch, settings):
    from scores import selectors

    def broken(**_: Any) -> Any:
        raise RuntimeError("secret internal detail")

    settings.DEBUG = True  # even with the debug page on, /v1/ answers in the envelope
    monkeypatch.setattr(selectors, "leaderboard_top", broken)
    error = envelope(client.get("/v1/leaderboard"), 500, "internal_error")
    assert "secret internal detail" not in json.dumps(error)


def test_database_outage_is_a_json_503(client, monkeypatch):
    from django.db import OperationalError

    from scores import selectors

    def unreachable(**_: Any) -> Any:
        raise OperationalError("connection refused")

    monkeypatch.setattr(selectors, "leaderboard_top", unreachable)
    envelope(client.get("/v1/leaderboard"), 503, "service_unavailable")
