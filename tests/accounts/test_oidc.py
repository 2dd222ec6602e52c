"""Players of a studio's identity provider: tokens verified against a real local JWKS endpoint."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from django.core.exceptions import ImproperlyConfigured
from rest_framework.test import APIClient

from accounts import oidc
from accounts.models import ExternalIdentity, User
from realtime.auth import viewer_from_token
from scores import action_tokens
from tests.conftest import submit
from tests.oidc_issuer import ALGORITHMS, LocalIssuer

pytestmark = pytest.mark.embedded


def _start(settings: Any, *issuers: LocalIssuer, **extra: Any) -> None:
    settings.OIDC_ISSUERS = [issuer.config(**extra) for issuer in issuers]
    oidc.jwks_cache.clear()


@pytest.fixture
def idp(settings: Any) -> Iterator[LocalIssuer]:
    issuer = LocalIssuer().start()
    settings.OIDC_JWKS_REFETCH_SECONDS = 60
    _start(settings, issuer)
    yield issuer
    issuer.stop()
    oidc.jwks_cache.clear()


def _client(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def _me(token: str) -> Any:
    return _client(token).get("/v1/auth/me")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@pytest.mark.parametrize("alg", ALGORITHMS)
def test_a_token_of_each_algorithm_signs_in_and_creates_the_player(db: None, idp: LocalIssuer, alg: str) -> None:
    response = _me(idp.token(f"steam-{alg}", alg=alg, preferred_username=f"Ace {alg}"))
    assert response.status_code == 200, response.content
    data = response.json()["data"]
    user = User.objects.get(pk=data["user_id"])  # our UUID, not the provider's subject
    assert data["username"] == f"Ace_{alg}" == user.username
    assert data["issuer"] == idp.issuer
    assert data["scopes"] == ["read:scores", "update:scores"]
    assert not user.has_usable_password()
    identity = ExternalIdentity.objects.get(user=user)
    assert (identity.issuer, identity.subject) == (idp.issuer, f"steam-{alg}")


def test_one_subject_is_one_player_and_issuers_never_collide(db: None, idp: LocalIssuer, settings: Any) -> None:
    other = LocalIssuer().start()
    try:
        _start(settings, idp, other)
        first = _me(idp.token("42", preferred_username="neo")).json()["data"]
        again = _me(idp.token("42", alg="RS256", preferred_username="renamed")).json()["data"]
        elsewhere = _me(other.token("42", preferred_username="neo")).json()["data"]
    finally:
        other.stop()
    assert first["user_id"] == again["user_id"]
    assert again["username"] == "neo"  # the name is taken from the first token only
    assert elsewhere["user_id"] != first["user_id"]
    assert elsewhere["username"].startswith("neo-")  # a taken name gets a stable suffix
    assert ExternalIdentity.objects.filter(subject="42").count() == 2


def test_a_rotated_key_is_fetched_once_and_then_cached(db: None, idp: LocalIssuer) -> None:
    assert _me(idp.token("p1")).status_code == 200
    assert idp.jwks_fetches == 1
    assert _me(idp.token("p1")).status_code == 200
    assert idp.jwks_fetches == 1  # cached
    new_key = idp.rotate("ES256")  # the old key leaves the JWKS
    assert _me(idp.token("p1", key=new_key)).status_code == 200
    assert idp.jwks_fetches == 2  # the unknown kid cost exactly one refetch
    assert _me(idp.token("p1", key=new_key)).status_code == 200
    assert idp.jwks_fetches == 2


def test_unknown_kids_refetch_at_most_once_per_interval(db: None, idp: LocalIssuer, settings: Any) -> None:
    assert _me(idp.token("p1")).status_code == 200
    for _ in range(5):
        forged = jwt_with_kid(idp, "no-such-key")
        response = _me(forged)
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "authentication_failed"  # as for a forged own token
    assert idp.jwks_fetches == 2  # one refetch for five unknown kids
    settings.OIDC_JWKS_REFETCH_SECONDS = 0
    new_key = idp.rotate("ES256")
    assert _me(idp.token("p1", key=new_key)).status_code == 200


def jwt_with_kid(idp: LocalIssuer, kid: str) -> str:
    import jwt

    key = idp.keys["ES256"]
    now = int(time.time())
    claims = {"iss": idp.issuer, "aud": idp.audience, "sub": "p1", "exp": now + 60}
    return jwt.encode(claims, key.private_key, algorithm="ES256", headers={"kid": kid})


@pytest.mark.parametrize(
    ("claims", "why"),
    [
        ({"aud": "another-game"}, "wrong audience"),
        ({"iss": None}, "no issuer"),
        ({"lifetime": -120}, "expired beyond the leeway"),
        ({"nbf": int(time.time()) + 600}, "not valid yet"),
        ({"exp": None}, "no expiry"),
        ({"sub": None}, "no subject"),
    ],
)
def test_tokens_with_bad_claims_are_refused(db: None, idp: LocalIssuer, claims: dict[str, Any], why: str) -> None:
    lifetime = claims.pop("lifetime", 300)
    subject = claims.pop("sub", "p1")
    response = _me(idp.token(subject, lifetime=lifetime, **claims))
    assert response.status_code == 401, why
    assert response.json()["success"] is False
    assert not ExternalIdentity.objects.exists()


def test_clock_skew_within_the_leeway_is_accepted(db: None, idp: LocalIssuer) -> None:
    assert _me(idp.token("p1", lifetime=-10)).status_code == 200  # expired 10 s ago, leeway 30 s
    assert _me(idp.token("p2", nbf=int(time.time()) + 10)).status_code == 200


def test_hs256_signed_with_the_public_key_is_refused(db: None, idp: LocalIssuer) -> None:
    """The classic algorithm confusion: the attacker knows the public key, the verifier must not HMAC with it."""
    key = idp.keys["RS256"]
    public_pem = key.private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    now = int(time.time())
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": key.kid}).encode())
    body = _b64(json.dumps({"iss": idp.issuer, "aud": idp.audience, "sub": "mallory", "exp": now + 60}).encode())
    signature = _b64(hmac.new(public_pem, f"{header}.{body}".encode(), hashlib.sha256).digest())
    response = _me(f"{header}.{body}.{signature}")
    assert response.status_code == 401
    assert not ExternalIdentity.objects.exists()


def test_alg_none_and_a_key_of_another_algorithm_are_refused(db: None, idp: LocalIssuer) -> None:
    now = int(time.time())
    header = _b64(json.dumps({"alg": "none", "kid": idp.keys["ES256"].kid}).encode())
    body = _b64(json.dumps({"iss": idp.issuer, "aud": idp.audience, "sub": "x", "exp": now + 60}).encode())
    assert _me(f"{header}.{body}.").status_code == 401
    # an ES256 key's kid on an EdDSA-signed token: the key decides the algorithm, not the header
    import jwt

    claims = {"iss": idp.issuer, "aud": idp.audience, "sub": "x", "exp": now + 60}
    mixed = jwt.encode(claims, idp.keys["EdDSA"].private_key, algorithm="EdDSA", headers={"kid": idp.keys["ES256"].kid})
    assert _me(mixed).status_code == 401


def test_a_token_from_an_unconfigured_issuer_is_refused(db: None, idp: LocalIssuer) -> None:
    stranger = LocalIssuer().start()
    try:
        response = _me(stranger.token("p1"))
    finally:
        stranger.stop()
    assert response.status_code == 401
    assert stranger.jwks_fetches == 0  # its keys were never even asked for
    assert not ExternalIdentity.objects.exists()


def test_an_issuer_restricted_to_one_algorithm_refuses_the_others(db: None, idp: LocalIssuer, settings: Any) -> None:
    _start(settings, idp, algorithms=["EdDSA"])
    assert _me(idp.token("p1", alg="EdDSA")).status_code == 200
    assert _me(idp.token("p1", alg="RS256")).status_code == 401


def test_scopes_come_from_the_configured_claim(db: None, idp: LocalIssuer, settings: Any) -> None:
    _start(settings, idp, scopes_claim="permissions")
    reader = _me(idp.token("r", permissions=["read:scores", "admin:everything"])).json()["data"]
    assert reader["scopes"] == ["read:scores"]  # only scopes we know are granted
    spaced = _me(idp.token("s", permissions="update:scores read:scores")).json()["data"]
    assert spaced["scopes"] == ["read:scores", "update:scores"]
    assert _me(idp.token("n")).json()["data"]["scopes"] == []


def test_default_scopes_of_an_issuer(db: None, idp: LocalIssuer, settings: Any) -> None:
    _start(settings, idp, default_scopes=["read:scores"])
    assert _me(idp.token("p1")).json()["data"]["scopes"] == ["read:scores"]


def test_an_external_player_submits_a_score_with_an_action_token(db: None, idp: LocalIssuer) -> None:
    """Action tokens work unchanged: they name our user_id, which the player learns from /v1/auth/me."""
    access = idp.token("player-7", preferred_username="seven")
    user_id = _me(access).json()["data"]["user_id"]
    token = action_tokens.mint(user_id=user_id, action_type="LEVEL_COMPLETION", score_increment=120).action_token
    response = submit(_client(access), token)
    assert response.status_code == 200, response.content
    assert response.json()["data"]["new_score"] == 120
    assert User.objects.get(pk=user_id).current_score == 120


def test_a_token_without_update_scope_cannot_submit(db: None, idp: LocalIssuer, settings: Any) -> None:
    _start(settings, idp, scopes_claim="scope")
    access = idp.token("reader", scope="read:scores")
    user_id = _me(access).json()["data"]["user_id"]
    token = action_tokens.mint(user_id=user_id, action_type="LEVEL_COMPLETION", score_increment=5).action_token
    assert submit(_client(access), token).status_code == 403


def test_a_disabled_external_player_is_refused(db: None, idp: LocalIssuer) -> None:
    access = idp.token("banned")
    user = User.objects.get(pk=_me(access).json()["data"]["user_id"])
    User.objects.filter(pk=user.pk).update(is_active=False)
    response = _me(access)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "account_disabled"


def test_the_live_board_accepts_external_tokens(db: None, idp: LocalIssuer) -> None:
    access = idp.token("watcher")
    viewer = viewer_from_token(access)
    assert viewer is not None
    assert viewer.user_id == _me(access).json()["data"]["user_id"]
    assert viewer.can_read
    assert viewer_from_token(idp.token("watcher", aud="nope")) is None


def test_an_unreachable_provider_without_cached_keys_is_a_503(db: None, idp: LocalIssuer) -> None:
    token = idp.token("p1")
    idp.stop()
    response = _me(token)
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "identity_provider_unavailable"


def test_keys_already_held_survive_a_provider_outage(db: None, idp: LocalIssuer, settings: Any) -> None:
    assert _me(idp.token("p1")).status_code == 200
    idp.stop()
    settings.OIDC_JWKS_CACHE_SECONDS = 0  # the cache is stale: the refresh fails, the old keys stay
    assert _me(idp.token("p1")).status_code == 200


def test_our_own_tokens_still_work_beside_external_issuers(db: None, idp: LocalIssuer, auth_client: APIClient) -> None:
    data = auth_client.get("/v1/auth/me").json()["data"]
    assert data["issuer"] is None
    assert idp.jwks_fetches == 0


def test_me_without_a_token_is_a_401(db: None) -> None:
    response = APIClient().get("/v1/auth/me")
    assert response.status_code == 401
    assert response.json()["success"] is False


@pytest.mark.parametrize(
    "entry",
    [
        {"issuer": "https://idp.example/"},
        {"issuer": "x", "audience": "a", "jwks_url": "file:///etc/passwd"},
        {"issuer": "x", "audience": "a", "jwks_url": "https://idp.example/jwks", "algorithms": ["HS256"]},
        {"issuer": "x", "audience": "a", "jwks_url": "https://idp.example/jwks", "audiense": "typo"},
    ],
)
def test_a_bad_issuer_configuration_is_refused(settings: Any, entry: dict[str, Any]) -> None:
    settings.OIDC_ISSUERS = [entry]
    with pytest.raises(ImproperlyConfigured):
        oidc.configured_issuers(())


def test_the_player_admin_page_shows_the_external_identity(db: None, idp: LocalIssuer, admin_client: Any) -> None:
    user_id = _me(idp.token("steam:76561198000000042", preferred_username="Moderated")).json()["data"]["user_id"]
    page = admin_client.get(f"/admin/accounts/user/{user_id}/change/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "steam:76561198000000042" in html and idp.issuer in html


def test_sign_out_everywhere_revokes_external_tokens_issued_before_it(db: None, idp: LocalIssuer) -> None:
    """An external provider cannot carry our session epoch: its tokens are judged by their issue time."""
    earlier = int(time.time()) - 5
    old = idp.token("roamer", iat=earlier)
    undated = idp.token("roamer", iat=None)
    assert _me(old).status_code == 200 and _me(undated).status_code == 200

    assert _client(old).post("/v1/auth/logout-all").status_code == 200

    for token in (old, undated):  # an undated token cannot show it is newer than the revocation
        refused = _me(token)
        assert refused.status_code == 401
        assert refused.json()["error"]["code"] == "session_revoked"
        assert viewer_from_token(token) is None
    time.sleep(1.05)  # iat has whole seconds: the same second as the revocation is refused too
    assert _me(idp.token("roamer")).status_code == 200  # issued after the revocation
