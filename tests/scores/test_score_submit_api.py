"""End to end through the test client: register → login → mint → submit → board."""

from __future__ import annotations

import pytest

from accounts.models import User
from scores.models import ScoreHistory
from tests.conftest import submit

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]


def test_register_login_mint_submit_and_see_the_board(api_client, mint):
    reg = api_client.post(
        "/v1/auth/register",
        {"username": "alice", "email": "alice@example.com", "password": "a-long-pass-phrase"},
        format="json",
    )
    assert reg.status_code == 201, reg.json()
    user_id = reg.json()["data"]["user_id"]

    login = api_client.post("/v1/auth/login", {"username": "alice", "password": "a-long-pass-phrase"}, format="json")
    assert login.status_code == 200
    body = login.json()["data"]
    assert body["token_type"] == "Bearer" and body["user_id"] == user_id

    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {body['access']}")
    token = mint(User.objects.get(pk=user_id), increment=250)
    res = submit(api_client, token, metadata={"action_type": "LEVEL_COMPLETION", "level_id": "level_42"})
    assert res.status_code == 200, res.json()
    assert res.json() == {
        "success": True,
        "data": {
            "user_id": user_id,
            "old_score": 0,
            "new_score": 250,
            "increment": 250,
            "new_rank": 1,
            "old_rank": None,
        },
    }

    board = api_client.get("/v1/leaderboard").json()["data"]
    assert board["total_players"] == 1
    assert board["leaderboard"][0]["user_id"] == user_id
    assert board["leaderboard"][0]["rank"] == 1
    assert board["leaderboard"][0]["score"] == 250
    history = ScoreHistory.objects.get(user_id=user_id)
    assert history.metadata == {"action_type": "LEVEL_COMPLETION", "level_id": "level_42"}


def test_replayed_token_is_409_with_the_original_result(auth_client, player, mint):
    token = mint(player, increment=40)
    first = submit(auth_client, token)
    again = submit(auth_client, token)
    assert first.status_code == 200
    assert again.status_code == 409
    error = again.json()["error"]
    assert error["code"] == "action_token_replayed"
    assert error["details"]["new_score"] == 40
    player.refresh_from_db()
    assert player.current_score == 40
