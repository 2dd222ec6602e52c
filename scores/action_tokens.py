"""Action tokens: HS256 JWTs that a trusted game server signs with ``ACTION_TOKEN_SECRET``.

Claims: ``action_id``, ``user_id``, ``action_type``, ``score_increment``, ``timestamp`` (integer
Unix seconds), ``nonce``. The secret is separate from the players' JWT key, so a player's access
token can never pass as an action token. Verification is stateless; single use is enforced by the
score service, which claims the nonce and action id in the same transaction as the score change.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
import time
import uuid
from dataclasses import dataclass
from typing import Any

import jwt
from django.conf import settings

from scoreboard.errors import ApiError, Unauthorized

ALGORITHM = "HS256"
REQUIRED_CLAIMS = ("action_id", "user_id", "action_type", "score_increment", "timestamp", "nonce")
ACTION_ID_MAX_LENGTH = 128
NONCE_MAX_LENGTH = 256
NONCE_MIN_LENGTH = 8


@dataclass(frozen=True)
class ActionClaims:
    action_id: str
    user_id: str
    action_type: str
    score_increment: int
    timestamp: int
    nonce: str

    @property
    def occurred_at(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.timestamp, tz=dt.UTC)


@dataclass(frozen=True)
class MintedActionToken:
    action_token: str
    action_id: str
    expires_at: dt.datetime


def action_rule(action_type: str) -> dict[str, int]:
    rule = settings.ACTION_TYPES.get(action_type)
    if rule is None:
        raise ApiError(
            f"Unknown action type {action_type!r}.",
            code="unknown_action_type",
            details={"allowed": sorted(settings.ACTION_TYPES)},
        )
    return rule


def check_increment(action_type: str, score_increment: Any) -> int:
    """The increment if it is an integer inside the action type's allowed range, else 400."""
    rule = action_rule(action_type)
    if isinstance(score_increment, bool) or not isinstance(score_increment, int):
        raise ApiError("score_increment must be an integer.", code="invalid_increment")
    low, high = rule["min_increment"], rule["max_increment"]
    if not low <= score_increment <= high:
        raise ApiError(
            f"score_increment must be between {low} and {high} for {action_type}.",
            code="increment_out_of_range",
            details={"min": low, "max": high},
        )
    return score_increment


def token_hash(action_token: str) -> str:
    return hashlib.sha256(action_token.encode()).hexdigest()


def mint(
    *, user_id: str, action_type: str, score_increment: int, now: float | None = None, secret: str | None = None
) -> MintedActionToken:
    check_increment(action_type, score_increment)
    issued = int(now if now is not None else time.time())
    action_id = uuid.uuid4().hex
    claims = {
        "action_id": action_id,
        "user_id": str(user_id),
        "action_type": action_type,
        "score_increment": score_increment,
        "timestamp": issued,
        "nonce": secrets.token_urlsafe(24),
    }
    token = jwt.encode(claims, secret or settings.ACTION_TOKEN_SECRET, algorithm=ALGORITHM)
    expires_at = dt.datetime.fromtimestamp(issued + settings.ACTION_TOKEN_MAX_AGE_SECONDS, tz=dt.UTC)
    return MintedActionToken(action_token=token, action_id=action_id, expires_at=expires_at)


def _decode(action_token: str) -> dict[str, Any]:
    secrets_to_try = [settings.ACTION_TOKEN_SECRET]
    if settings.ACTION_TOKEN_SECRET_PREVIOUS:
        secrets_to_try.append(settings.ACTION_TOKEN_SECRET_PREVIOUS)
    last_error: jwt.PyJWTError | None = None
    for secret in secrets_to_try:
        try:
            # Only HS256 is accepted: "none" and every other algorithm fail here.
            return jwt.decode(
                action_token,
                secret,
                algorithms=[ALGORITHM],
                options={"require": list(REQUIRED_CLAIMS), "verify_aud": False, "verify_iss": False},
            )
        except jwt.InvalidSignatureError as exc:
            last_error = exc
            continue
        except jwt.MissingRequiredClaimError as exc:
            raise Unauthorized(f"The action token lacks the {exc.claim!r} claim.", code="invalid_action_token") from exc
        except jwt.ExpiredSignatureError as exc:
            raise Unauthorized("The action token has expired.", code="action_token_expired") from exc
        except jwt.PyJWTError as exc:
            raise Unauthorized(
                "The action token is malformed or not signed correctly.", code="invalid_action_token"
            ) from exc
    raise Unauthorized("The action token's signature is invalid.", code="invalid_action_token") from last_error


def verify(action_token: str, *, now: float | None = None) -> ActionClaims:
    """Check signature, claims and time window. 401 for anything forged, stale or malformed;
    400 for an authentic token whose action type or increment is not allowed."""
    claims = _decode(action_token)
    for name in ("action_id", "user_id", "action_type", "nonce"):
        if not isinstance(claims[name], str) or not claims[name]:
            raise Unauthorized(
                f"The action token's {name!r} claim must be a non-empty string.", code="invalid_action_token"
            )
    if len(claims["action_id"]) > ACTION_ID_MAX_LENGTH:
        raise Unauthorized("The action token's action_id is too long.", code="invalid_action_token")
    if not NONCE_MIN_LENGTH <= len(claims["nonce"]) <= NONCE_MAX_LENGTH:
        raise Unauthorized("The action token's nonce has an invalid length.", code="invalid_action_token")
    timestamp = claims["timestamp"]
    if isinstance(timestamp, bool) or not isinstance(timestamp, int):
        raise Unauthorized("The action token's timestamp must be integer Unix seconds.", code="invalid_action_token")
    current = now if now is not None else time.time()
    if timestamp < current - settings.ACTION_TOKEN_MAX_AGE_SECONDS:
        raise Unauthorized("The action token has expired.", code="action_token_expired")
    if timestamp > current + settings.ACTION_TOKEN_MAX_FUTURE_SECONDS:
        raise Unauthorized("The action token's timestamp is in the future.", code="action_token_from_future")
    increment = check_increment(claims["action_type"], claims["score_increment"])
    return ActionClaims(
        action_id=claims["action_id"],
        user_id=claims["user_id"],
        action_type=claims["action_type"],
        score_increment=increment,
        timestamp=timestamp,
        nonce=claims["nonce"],
    )
