"""End to end through the test client: register → login → mint → submit → board."""

from __future__ import annotations

import dataclasses

import pytest

from accounts.models import User
from scores.models import ScoreHistory
from scores.services import BoardResult
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
            # One entry per board the action fed: only the global board exists here.
            "boards": [
                {
                    "board": "global",
                    "period": "all",
                    "old_score": None,
                    "new_score": 250,
                    "old_rank": None,
                    "new_rank": 1,
                }
            ],
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


def test_game_server_mints_through_the_api_and_the_board_ranks_the_player(api_client, make_player, mint, client_for):
    """register → login → POST /v1/actions (game-server key) → submit → the board shows the right rank."""
    from django.core.management import call_command

    from accounts import services as account_services

    # Two players already on the board: 500 and 100 points.
    for increment in (500, 100):
        other = make_player()
        assert submit(client_for(other), mint(other, increment=increment)).status_code == 200

    assert (
        api_client.post(
            "/v1/auth/register",
            {"username": "carol", "email": "carol@example.com", "password": "a-long-pass-phrase"},
            format="json",
        ).status_code
        == 201
    )
    login = api_client.post("/v1/auth/login", {"username": "carol", "password": "a-long-pass-phrase"}, format="json")
    carol = login.json()["data"]
    _key, raw_key = account_services.game_server_key_create(name="game-server-1")

    minted = api_client.post(
        "/v1/actions",
        {"user_id": carol["user_id"], "action_type": "LEVEL_COMPLETION", "score_increment": 300},
        format="json",
        HTTP_X_API_KEY=raw_key,
    )
    assert minted.status_code == 201, minted.json()
    action = minted.json()["data"]
    assert set(action) == {"action_token", "action_id", "expires_at"}

    player_client = api_client.__class__()
    player_client.credentials(HTTP_AUTHORIZATION=f"Bearer {carol['access']}")
    first = submit(player_client, action["action_token"], metadata={"action_type": "LEVEL_COMPLETION"})
    assert first.status_code == 200, first.json()
    assert first.json()["data"] == {
        "user_id": carol["user_id"],
        "old_score": 0,
        "new_score": 300,
        "increment": 300,
        "new_rank": 2,
        "old_rank": None,
        "boards": [
            {"board": "global", "period": "all", "old_score": None, "new_score": 300, "old_rank": None, "new_rank": 2}
        ],
    }

    # A second action moves carol to the top; the response carries the old and new rank.
    token = api_client.post(
        "/v1/actions",
        {"user_id": carol["user_id"], "action_type": "ACHIEVEMENT_UNLOCK", "score_increment": 250},
        format="json",
        HTTP_X_API_KEY=raw_key,
    ).json()["data"]["action_token"]
    second = submit(player_client, token).json()["data"]
    assert (second["old_rank"], second["new_rank"], second["new_score"]) == (2, 1, 550)

    board = api_client.get("/v1/leaderboard").json()["data"]
    assert board["total_players"] == 3
    assert [(r["rank"], r["score"]) for r in board["leaderboard"]] == [(1, 550), (2, 500), (3, 100)]
    assert board["leaderboard"][0]["user_id"] == carol["user_id"]
    assert board["leaderboard"][0]["username"] == "carol"
    assert board["last_updated"] == board["leaderboard"][0]["last_updated"]

    # The operator command mints the same kind of token.
    from io import StringIO

    out = StringIO()
    call_command("mint_action_token", "carol", "--increment", "5", stdout=out)
    assert submit(player_client, out.getvalue().strip()).json()["data"]["new_score"] == 555


def test_a_board_result_answers_every_field() -> None:
    # BoardResult.as_dict is spelled out (no dataclasses.asdict on the update path): a new field
    # must not be left out of the answer.
    result = BoardResult(board="global", period="all", old_score=None, new_score=5, old_rank=None, new_rank=1)
    assert result.as_dict() == dataclasses.asdict(result)
