"""JWT_SECRET rotation: tokens signed with JWT_SECRET_PREVIOUS keep working, nothing else does."""

from __future__ import annotations

import datetime as dt
from typing import Any

import jwt
import pytest
from rest_framework.test import APIClient
from rest_framework_simplejwt import state

from scoreboard import jwt_rotation
from tests.conftest import access_token_for

pytestmark = pytest.mark.embedded

NEW_SECRET = "new-jwt-secret-for-the-rotation-test-0123456789abcdef"


@pytest.fixture
def rotated(settings: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    """Rotate: the running secret becomes the previous one and a new one signs. Returns the old one."""
    old = settings.SIMPLE_JWT["SIGNING_KEY"]
    monkeypatch.setattr(state, "token_backend", state.token_backend)  # restored after the test
    settings.SIMPLE_JWT = {**settings.SIMPLE_JWT, "SIGNING_KEY": NEW_SECRET}
    settings.JWT_SECRET_PREVIOUS = old
    jwt_rotation.install()
    return str(old)


def authenticated(token: str) -> bool:
    """POST an empty body: 400 means the JWT passed, 401 means it did not."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    status = client.post("/v1/scores/update", {}, format="json").status_code
    assert status in (400, 401), status
    return status == 400


def test_tokens_signed_with_the_previous_secret_still_verify(player: Any, rotated: str) -> None:
    # Issued before the rotation: sign with the old key by hand, with the claims of a real token.
    claims = jwt.decode(access_token_for(player), options={"verify_signature": False})
    old_token = jwt.encode(claims, rotated, algorithm="HS256")
    assert authenticated(old_token)
    assert authenticated(access_token_for(player))  # new tokens are signed with the new key
    assert jwt.decode(access_token_for(player), NEW_SECRET, algorithms=["HS256"], audience=claims["aud"])


def test_other_keys_and_expired_tokens_are_still_refused(player: Any, rotated: str) -> None:
    claims = jwt.decode(access_token_for(player), options={"verify_signature": False})
    assert not authenticated(jwt.encode(claims, "some-other-secret-0123456789abcdef0123", algorithm="HS256"))
    expired = dict(claims, exp=int((dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)).timestamp()))
    assert not authenticated(jwt.encode(expired, rotated, algorithm="HS256"))


def test_without_a_previous_secret_old_tokens_are_refused(player: Any, settings: Any, monkeypatch: Any) -> None:
    old_token = access_token_for(player)
    monkeypatch.setattr(state, "token_backend", state.token_backend)
    settings.SIMPLE_JWT = {**settings.SIMPLE_JWT, "SIGNING_KEY": NEW_SECRET}
    settings.JWT_SECRET_PREVIOUS = ""
    from rest_framework_simplejwt.backends import TokenBackend
    from rest_framework_simplejwt.settings import api_settings

    state.token_backend = TokenBackend(
        api_settings.ALGORITHM, NEW_SECRET, "", api_settings.AUDIENCE, api_settings.ISSUER
    )
    assert not authenticated(old_token)
