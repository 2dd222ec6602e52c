"""Every forged, stale or out-of-range action token is refused with the documented status, and the
score, history and nonce ledger stay untouched."""

from __future__ import annotations

import base64
import json
import secrets
import time
import uuid
from typing import Any

import jwt
import pytest
from django.conf import settings

from accounts.models import User
from scores.models import ScoreHistory, UsedNonce
from tests.conftest import access_token_for, submit

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]

OTHER_SECRET = "some-other-secret-that-is-long-enough-0123456789"


def claims_for(user: User, **overrides: Any) -> dict[str, Any]:
    claims: dict[str, Any] = {
        "action_id": uuid.uuid4().hex,
        "user_id": str(user.pk),
        "action_type": "LEVEL_COMPLETION",
        "score_increment": 100,
        "timestamp": int(time.time()),
        "nonce": secrets.token_urlsafe(24),
    }
    claims.update(overrides)
    return claims


def sign(claims: dict[str, Any], key: str | None = None, algorithm: str = "HS256") -> str:
    return jwt.encode(claims, key or settings.ACTION_TOKEN_SECRET, algorithm=algorithm)


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def unsigned(claims: dict[str, Any]) -> str:
    """An ``alg: none`` token: header and claims, empty signature."""
    return f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims)}."


def assert_refused(response: Any, status: int, player: User) -> dict[str, Any]:
    assert response.status_code == status, response.content
    body = response.json()
    assert body["success"] is False
    assert set(body["error"]) == {"code", "message", "details"}
    player.refresh_from_db()
    assert player.current_score == 0
    assert player.score_reached_at is None
    assert not ScoreHistory.objects.filter(user=player).exists()
    assert not UsedNonce.objects.filter(user=player).exists()
    return body["error"]


def test_valid_token_is_accepted(auth_client, player):
    """The control case: the helpers below build tokens the service accepts when nothing is wrong."""
    response = submit(auth_client, sign(claims_for(player)))
    assert response.status_code == 200, response.json()
    assert response.json()["data"]["new_score"] == 100


def test_forged_signature_is_401(auth_client, player):
    assert_refused(submit(auth_client, sign(claims_for(player), OTHER_SECRET)), 401, player)


def test_tampered_claims_keep_no_valid_signature_401(auth_client, player):
    header, _payload, signature = sign(claims_for(player)).split(".")
    forged = f"{header}.{_b64(claims_for(player, score_increment=1000))}.{signature}"
    assert_refused(submit(auth_client, forged), 401, player)


def test_alg_none_is_401(auth_client, player):
    assert_refused(submit(auth_client, unsigned(claims_for(player))), 401, player)


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
def test_other_hmac_algorithm_with_the_right_secret_is_401(auth_client, player):
    assert_refused(submit(auth_client, sign(claims_for(player), algorithm="HS512")), 401, player)


def test_token_signed_with_the_jwt_key_is_401(auth_client, player):
    assert_refused(submit(auth_client, sign(claims_for(player), settings.JWT_SECRET)), 401, player)


def test_players_own_access_token_is_not_an_action_token(auth_client, player):
    assert_refused(submit(auth_client, access_token_for(player)), 401, player)


def test_garbage_token_is_401(auth_client, player):
    assert_refused(submit(auth_client, "not.a.jwt"), 401, player)


def test_expired_token_is_401(auth_client, player):
    stale = int(time.time()) - settings.ACTION_TOKEN_MAX_AGE_SECONDS - 5
    error = assert_refused(submit(auth_client, sign(claims_for(player, timestamp=stale))), 401, player)
    assert error["code"] == "action_token_expired"


def test_future_timestamp_is_401(auth_client, player):
    ahead = int(time.time()) + settings.ACTION_TOKEN_MAX_FUTURE_SECONDS + 60
    error = assert_refused(submit(auth_client, sign(claims_for(player, timestamp=ahead))), 401, player)
    assert error["code"] == "action_token_from_future"


def test_small_clock_skew_is_accepted(auth_client, player):
    ahead = int(time.time()) + settings.ACTION_TOKEN_MAX_FUTURE_SECONDS // 2
    assert submit(auth_client, sign(claims_for(player, timestamp=ahead))).status_code == 200


@pytest.mark.parametrize("claim", ["action_id", "user_id", "action_type", "score_increment", "timestamp", "nonce"])
def test_missing_claim_is_401(auth_client, player, claim):
    claims = claims_for(player)
    del claims[claim]
    assert_refused(submit(auth_client, sign(claims)), 401, player)


@pytest.mark.parametrize("timestamp", ["1704067200", 1.5e9, None])
def test_non_integer_timestamp_is_401(auth_client, player, timestamp):
    assert_refused(submit(auth_client, sign(claims_for(player, timestamp=timestamp))), 401, player)


def test_another_players_token_is_403(client_for, make_player, mint):
    me, other = make_player(), make_player()
    response = submit(client_for(me), mint(other, increment=10))
    error = assert_refused(response, 403, me)
    assert error["code"] == "action_token_user_mismatch"
    other.refresh_from_db()
    assert other.current_score == 0


def test_increment_over_the_limit_is_400(auth_client, player):
    limit = settings.ACTION_TYPES["LEVEL_COMPLETION"]["max_increment"]
    error = assert_refused(submit(auth_client, sign(claims_for(player, score_increment=limit + 1))), 400, player)
    assert error["code"] == "increment_out_of_range"


@pytest.mark.parametrize("increment", [0, -5])
def test_zero_or_negative_increment_is_400(auth_client, player, increment):
    assert_refused(submit(auth_client, sign(claims_for(player, score_increment=increment))), 400, player)


@pytest.mark.parametrize("increment", ["100", 10.5, True, [1]])
def test_non_integer_increment_is_400(auth_client, player, increment):
    error = assert_refused(submit(auth_client, sign(claims_for(player, score_increment=increment))), 400, player)
    assert error["code"] == "invalid_increment"


def test_unknown_action_type_is_400(auth_client, player):
    assert_refused(submit(auth_client, sign(claims_for(player, action_type="BOSS_KILL"))), 400, player)


def test_metadata_action_type_must_match_the_token(auth_client, player, mint):
    response = submit(auth_client, mint(player), metadata={"action_type": "ACHIEVEMENT_UNLOCK"})
    assert assert_refused(response, 400, player)["code"] == "action_type_mismatch"


def test_token_over_1000_characters_is_400(auth_client, player):
    assert_refused(submit(auth_client, "a" * (settings.ACTION_TOKEN_MAX_LENGTH + 1)), 400, player)


def test_refused_token_does_not_burn_a_valid_retry(auth_client, player, mint):
    """A rejected attempt claims nothing: the same action re-sent correctly still applies once."""
    token = mint(player, increment=30)
    assert_refused(submit(auth_client, token, metadata={"action_type": "ACHIEVEMENT_UNLOCK"}), 400, player)
    assert submit(auth_client, token).status_code == 200
    assert submit(auth_client, token).status_code == 409
    player.refresh_from_db()
    assert player.current_score == 30
