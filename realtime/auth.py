"""Who is watching: a JWT from the WebSocket auth message, an Authorization header or a cookie.

The page stores the access token in the ``sb_access`` cookie when the board is private, because
a browser cannot put an Authorization header on a page load, an EventSource or a WebSocket.
Tokens never travel in URLs (they would end up in access logs).
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.http import HttpRequest, parse_cookie
from rest_framework.exceptions import AuthenticationFailed

from accounts.authentication import SCOPE_READ, ScopedJWTAuthentication, token_scopes
from scoreboard.errors import ApiError

ACCESS_COOKIE = "sb_access"
MAX_TOKEN_LENGTH = 4096


@dataclass(frozen=True)
class Viewer:
    user_id: str
    scopes: frozenset[str]
    expires_at: float | None = None  # the token's exp (epoch seconds)

    @property
    def can_read(self) -> bool:
        return SCOPE_READ in self.scopes


def viewer_from_token(raw: str) -> Viewer | None:
    """The active player an access token names, or None for a forged, expired or foreign token."""
    if not raw or len(raw) > MAX_TOKEN_LENGTH:
        return None
    authentication = ScopedJWTAuthentication()
    try:
        validated = authentication.get_validated_token(raw.encode())
        user = authentication.get_user(validated)
    except (AuthenticationFailed, ApiError):
        return None
    exp = validated.get("exp")
    return Viewer(
        user_id=str(user.pk),
        scopes=frozenset(token_scopes(validated)),
        expires_at=float(exp) if isinstance(exp, int | float) else None,
    )


def read_allowed(viewer: Viewer | None) -> bool:
    """Whether the board may be shown to this viewer (public unless LEADERBOARD_REQUIRE_AUTH)."""
    if not settings.LEADERBOARD_REQUIRE_AUTH:
        return True
    return viewer is not None and viewer.can_read


def token_from_request(request: HttpRequest) -> str:
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer "):
        return header[len("Bearer ") :].strip()
    return request.COOKIES.get(ACCESS_COOKIE, "")


def token_from_scope(scope: dict[str, object]) -> str:
    """The access token a WebSocket handshake carries in the cookie, if any."""
    headers = scope.get("headers") or []
    for name, value in headers:  # type: ignore[attr-defined]
        if name == b"cookie":
            return parse_cookie(value.decode("latin1")).get(ACCESS_COOKIE, "")
    return ""
