"""Action tokens minted offline: an HS256 JWT with exactly the claims the service checks.

The service accepts HS256 only, signed with ``ACTION_TOKEN_SECRET`` (shared with game servers,
distinct from the secret of players' JWTs). The standard library signs it: the token is
``base64url(header).base64url(claims).base64url(HMAC-SHA256)``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
import uuid

HEADER = {"alg": "HS256", "typ": "JWT"}
NONCE_BYTES = 24
MAX_ACTION_ID_LENGTH = 128


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _json(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":"), sort_keys=True).encode()


def mint_action_token(
    secret: str,
    *,
    user_id: str,
    action_type: str,
    score_increment: int,
    action_id: str | None = None,
    nonce: str | None = None,
    timestamp: int | None = None,
) -> str:
    """A signed action token for ``user_id`` (the player's Scoreboard UUID).

    ``timestamp`` is when the action happened (Unix seconds, default now): the service accepts it
    from 5 minutes in the past to 30 seconds in the future. ``action_id`` and ``nonce`` default to
    fresh random values; reusing either makes a replay (409).
    """
    if not secret:
        raise ValueError("secret is empty")
    if isinstance(score_increment, bool) or not isinstance(score_increment, int):
        raise TypeError("score_increment must be an int")
    action_id = action_id or uuid.uuid4().hex
    if len(action_id) > MAX_ACTION_ID_LENGTH:
        raise ValueError(f"action_id is longer than {MAX_ACTION_ID_LENGTH} characters")
    claims = {
        "action_id": action_id,
        "user_id": str(user_id),
        "action_type": action_type,
        "score_increment": score_increment,
        "timestamp": int(time.time()) if timestamp is None else int(timestamp),
        "nonce": nonce or secrets.token_urlsafe(NONCE_BYTES),
    }
    signing_input = f"{_b64(_json(HEADER))}.{_b64(_json(claims))}"
    signature = hmac.new(secret.encode(), signing_input.encode("ascii"), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"
