"""Registration, login, refresh rotation, logout, and how the API treats bad or insufficient JWTs."""

from __future__ import annotations

import datetime as dt
import time
import uuid
from typing import Any

import jwt
import pytest
from django.conf import settings
from django.test import override_settings
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import AccessToken

from accounts import services
from accounts.authentication import SCOPE_READ, SCOPE_UPDATE
from accounts.models import User
from tests.conftest import submit
from tests.factories import PLAYER_PASSWORD

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]

PASSWORD = "correct-horse-battery-staple"


def register(client: APIClient, username: str = "alice", email: str = "alice@example.com", password: str = PASSWORD):
    return client.post("/v1/auth/register", {"username": username, "email": email, "password": password}, format="json")


def login(client: APIClient, username: str, password: str = PLAYER_PASSWORD):
    return client.post("/v1/auth/login", {"username": username, "password": password}, format="json")


def refresh(client: APIClient, token: str):
    return client.post("/v1/auth/refresh", {"refresh": token}, format="json")


def error_of(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert body["success"] is False
    return body["error"]


def bearer(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def jwt_claims(user: User, **overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {
        "token_type": "access",
        "sub": str(user.pk),
        "iat": now,
        "exp": now + 300,
        "jti": uuid.uuid4().hex,
        "aud": settings.SIMPLE_JWT["AUDIENCE"],
        "iss": settings.SIMPLE_JWT["ISSUER"],
        "scope": [SCOPE_READ, SCOPE_UPDATE],
        "session_id": uuid.uuid4().hex,
    }
    claims.update(overrides)
    return claims


# --- register ----------------------------------------------------------------------------------
def test_register_creates_a_player(api_client):
    response = register(api_client)
    assert response.status_code == 201
    data = response.json()["data"]
    assert data["username"] == "alice"
    user = User.objects.get(pk=data["user_id"])
    assert user.email == "alice@example.com"
    assert user.check_password(PASSWORD) and user.password != PASSWORD
    assert user.current_score == 0


@pytest.mark.parametrize(
    ("username", "email", "code"),
    [("ALICE", "other@example.com", "username_taken"), ("bob", "Alice@Example.com", "email_taken")],
)
def test_taken_username_or_email_is_409(api_client, username, email, code):
    assert register(api_client).status_code == 201
    assert error_of(register(api_client, username, email), 409)["code"] == code
    assert User.objects.count() == 1


@pytest.mark.parametrize("password", ["short1", "password123", "12345678901", "alice-example"])
def test_weak_password_is_400(api_client, password):
    error = error_of(register(api_client, password=password), 400)
    assert "password" in error["details"]
    assert not User.objects.exists()


@pytest.mark.parametrize(
    "body",
    [
        {"username": "a b", "email": "ab@example.com", "password": PASSWORD},
        {"username": "ab", "email": "ab@example.com", "password": PASSWORD},
        {"username": "abc", "email": "not-an-email", "password": PASSWORD},
        {"username": "abc", "email": "abc@example.com"},
        {"username": 123, "email": "abc@example.com", "password": PASSWORD},
    ],
)
def test_invalid_registration_is_400(api_client, body):
    error_of(api_client.post("/v1/auth/register", body, format="json"), 400)
    assert not User.objects.exists()


# --- login and the token it issues -------------------------------------------------------------
def test_login_issues_a_scoped_short_lived_jwt_pair(api_client, player):
    response = login(api_client, player.username)
    assert response.status_code == 200
    data = response.json()["data"]
    assert data["token_type"] == "Bearer"
    assert data["user_id"] == str(player.pk)
    assert data["expires_in"] == int(settings.JWT_ACCESS_LIFETIME.total_seconds())
    claims = jwt.decode(
        data["access"],
        settings.JWT_SECRET,
        algorithms=["HS256"],
        audience=settings.SIMPLE_JWT["AUDIENCE"],
        issuer=settings.SIMPLE_JWT["ISSUER"],
    )
    assert claims["sub"] == str(player.pk)
    assert set(claims["scope"]) == {SCOPE_READ, SCOPE_UPDATE}
    assert claims["session_id"]
    assert claims["exp"] - claims["iat"] == data["expires_in"]
    # Signed with JWT_SECRET, not Django's SECRET_KEY.
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(data["access"], settings.SECRET_KEY, algorithms=["HS256"], audience="scoreboard")


@pytest.mark.parametrize(("username", "password"), [("known", "wrong-password-1"), ("nobody", PLAYER_PASSWORD)])
def test_wrong_credentials_are_401(api_client, make_player, username, password):
    make_player(username="known")
    error = error_of(login(api_client, username, password), 401)
    assert error["code"] == "invalid_credentials"


def test_disabled_player_cannot_log_in(api_client, make_player):
    make_player(username="banned", is_active=False)
    error_of(login(api_client, "banned"), 401)


# --- refresh rotation and logout ----------------------------------------------------------------
def test_refresh_rotates_and_the_old_refresh_token_is_refused(api_client, player):
    first = login(api_client, player.username).json()["data"]
    rotated = refresh(api_client, first["refresh"])
    assert rotated.status_code == 200
    second = rotated.json()["data"]
    assert second["refresh"] != first["refresh"] and second["access"] != first["access"]
    same_session = [
        jwt.decode(t, options={"verify_signature": False})["session_id"] for t in (first["access"], second["access"])
    ]
    assert same_session[0] == same_session[1]
    assert bearer(second["access"]).get("/v1/leaderboard").status_code == 200

    assert error_of(refresh(api_client, first["refresh"]), 401)["code"] == "token_not_valid"
    assert refresh(api_client, second["refresh"]).status_code == 200


def test_logout_revokes_the_refresh_token(api_client, player):
    pair = login(api_client, player.username).json()["data"]
    response = api_client.post("/v1/auth/logout", {"refresh": pair["refresh"]}, format="json")
    assert response.status_code == 200
    assert response.json() == {"success": True, "data": {"logged_out": True}}
    error_of(refresh(api_client, pair["refresh"]), 401)
    error_of(api_client.post("/v1/auth/logout", {"refresh": pair["refresh"]}, format="json"), 401)


def test_access_token_is_not_a_refresh_token(api_client, player):
    pair = login(api_client, player.username).json()["data"]
    error_of(refresh(api_client, pair["access"]), 401)


def test_refresh_for_a_disabled_player_is_401(api_client, player):
    pair = login(api_client, player.username).json()["data"]
    User.objects.filter(pk=player.pk).update(is_active=False)
    error_of(refresh(api_client, pair["refresh"]), 401)


@pytest.mark.parametrize("token", ["", "garbage", "a.b.c"])
def test_malformed_refresh_token_is_401_or_400(api_client, token):
    response = refresh(api_client, token)
    assert response.status_code in (400, 401)
    assert response.json()["success"] is False


# --- using the JWT -----------------------------------------------------------------------------
def test_no_token_is_401(api_client, player, mint):
    error = error_of(submit(api_client, mint(player)), 401)
    assert error["code"] == "not_authenticated"


def test_disabled_player_with_a_valid_token_is_403(player, mint):
    access = services.player_tokens_issue(user=player).access
    User.objects.filter(pk=player.pk).update(is_active=False)
    error = error_of(submit(bearer(access), mint(player)), 403)
    assert error["code"] == "account_disabled"
    player.refresh_from_db()
    assert player.current_score == 0


def test_missing_update_scope_is_403(player, mint):
    token = AccessToken.for_user(player)
    token["scope"] = [SCOPE_READ]
    error_of(submit(bearer(str(token)), mint(player)), 403)
    player.refresh_from_db()
    assert player.current_score == 0


def test_expired_jwt_is_401(player, mint):
    past = int(time.time()) - 3600
    token = jwt.encode(jwt_claims(player, iat=past, exp=past + 60), settings.JWT_SECRET, algorithm="HS256")
    error_of(submit(bearer(token), mint(player)), 401)


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({}, "some-other-secret-of-sufficient-length-0123456789"),  # forged signature
        ({}, "ACTION_TOKEN_SECRET"),  # a token signed with the action-token key is not a player JWT
        ({}, "SECRET_KEY"),  # nor one signed with Django's key
        ({"aud": "another-service"}, None),
        ({"iss": "someone-else"}, None),
        ({"sub": str(uuid.uuid4())}, None),  # no such player
        ({"sub": "not-a-uuid"}, None),
        ({"sub": 12345}, None),
        ({"scope": "update:scores", "exp": "tomorrow"}, None),
        ({"token_type": "refresh"}, None),
    ],
)
def test_forged_or_foreign_jwt_is_401(player, mint, overrides, key):
    signing_key = getattr(settings, key) if key in ("ACTION_TOKEN_SECRET", "SECRET_KEY") else key
    token = jwt.encode(jwt_claims(player, **overrides), signing_key or settings.JWT_SECRET, algorithm="HS256")
    error_of(submit(bearer(token), mint(player)), 401)
    player.refresh_from_db()
    assert player.current_score == 0


def test_alg_none_jwt_is_401(player, mint):
    token = jwt.encode(jwt_claims(player), key="", algorithm="none")
    error_of(submit(bearer(token), mint(player)), 401)


def test_the_control_jwt_is_accepted(player, mint):
    """The hand-built claims above are valid when nothing is wrong with them."""
    token = jwt.encode(jwt_claims(player), settings.JWT_SECRET, algorithm="HS256")
    assert submit(bearer(token), mint(player)).status_code == 200


def test_leaderboard_can_require_read_scope(api_client, player):
    with override_settings(LEADERBOARD_REQUIRE_AUTH=True):
        error_of(api_client.get("/v1/leaderboard"), 401)
        no_read = AccessToken.for_user(player)
        no_read["scope"] = [SCOPE_UPDATE]
        error_of(bearer(str(no_read)).get("/v1/leaderboard"), 403)
        assert bearer(services.player_tokens_issue(user=player).access).get("/v1/leaderboard").status_code == 200
    assert api_client.get("/v1/leaderboard").status_code == 200


def test_jwt_leeway_is_small(player):
    """A token expired longer ago than the leeway is refused even on a read."""
    past = int(time.time()) - int(settings.SIMPLE_JWT["LEEWAY"]) - 5
    token = jwt.encode(jwt_claims(player, iat=past - 60, exp=past), settings.JWT_SECRET, algorithm="HS256")
    error_of(bearer(token).get("/v1/leaderboard"), 401)
    assert dt.timedelta(seconds=int(settings.SIMPLE_JWT["LEEWAY"])) < dt.timedelta(minutes=1)


@pytest.mark.parametrize("subject", ["not-a-uuid", 12345])
def test_refresh_token_whose_subject_is_not_a_uuid_is_401(api_client, player, subject):
    now = int(time.time())
    claims = jwt_claims(player, token_type="refresh", sub=subject, exp=now + 3600)
    token = jwt.encode(claims, settings.JWT_SECRET, algorithm="HS256")
    error_of(refresh(api_client, token), 401)
