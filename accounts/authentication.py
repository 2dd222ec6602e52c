"""JWT authentication with scopes: expired/forged tokens are 401, disabled players are 403."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rest_framework.permissions import BasePermission
from rest_framework_simplejwt.authentication import JWTAuthentication
from rest_framework_simplejwt.exceptions import AuthenticationFailed
from rest_framework_simplejwt.settings import api_settings
from rest_framework_simplejwt.tokens import Token

from accounts import oidc
from accounts.models import User
from accounts.scopes import EPOCH_CLAIM, PLAYER_SCOPES, SCOPE_READ, SCOPE_UPDATE
from accounts.selectors import user_by_id
from scoreboard.errors import Forbidden, Unauthorized

if TYPE_CHECKING:
    from rest_framework.request import Request
    from rest_framework.views import APIView


class ScopedJWTAuthentication(JWTAuthentication):
    """simplejwt's authentication, but a disabled (banned) player is refused with 403, not 401.

    Tokens of a configured external issuer (``OIDC_ISSUERS``, accounts/oidc.py) are verified
    against that issuer's keys instead, and name the player by (issuer, subject).
    """

    def get_validated_token(self, raw_token: bytes) -> Token | oidc.ExternalAccessToken:  # type: ignore[override]
        external = oidc.verify_external_token(raw_token, known_scopes=PLAYER_SCOPES)
        return external if external is not None else super().get_validated_token(raw_token)

    def get_user(self, validated_token: Token | oidc.ExternalAccessToken) -> User:  # type: ignore[override]
        if isinstance(validated_token, oidc.ExternalAccessToken):
            return external_player(validated_token)
        try:
            user_id = validated_token[api_settings.USER_ID_CLAIM]
        except KeyError as exc:
            raise AuthenticationFailed("The token carries no subject.", code="token_not_valid") from exc
        user = user_by_id(user_id=str(user_id))
        if user is None:
            raise AuthenticationFailed("The token's player does not exist.", code="user_not_found")
        if not user.is_active:
            raise Forbidden("This account is disabled.", code="account_disabled")
        session_epoch_check(validated_token, user)
        return user

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="scoreboard"'


def session_epoch_check(token: Token, user: User) -> None:
    """401 for a token issued before the player's sessions were revoked (User.token_epoch)."""
    if int(token.get(EPOCH_CLAIM, 0) or 0) != user.token_epoch:
        raise Unauthorized("This session was signed out; log in again.", code="session_revoked")


def external_player(token: oidc.ExternalAccessToken) -> User:
    """The active player of an external token; its first valid token creates the player."""
    from accounts.services import external_player_resolve  # services import this module's scopes

    user = external_player_resolve(issuer=token.issuer.issuer, subject=token.subject, display_name=token.display_name)
    if not user.is_active:
        raise Forbidden("This account is disabled.", code="account_disabled")
    external_session_check(token, user)
    return user


def external_session_check(token: oidc.ExternalAccessToken, user: User) -> None:
    """401 for an external token issued at or before the player's sessions were revoked.

    Its issuer cannot put our epoch in it, so its issue time decides. A token issued in the same
    second as the revocation is refused too (``iat`` has whole seconds): the player's next token,
    a second later, works. A token without ``iat`` cannot show it is newer, so after a revocation
    it is refused.
    """
    revoked_at = user.sessions_revoked_at
    if revoked_at is None:
        return
    issued_at = token.get("iat")
    if not isinstance(issued_at, int | float) or issued_at <= int(revoked_at.timestamp()):
        raise Unauthorized("This session was signed out; log in again.", code="session_revoked")


def token_scopes(token: Any) -> set[str]:
    if token is None:
        return set()
    scope = token.get("scope", [])
    if isinstance(scope, str):
        return set(scope.split())
    return {s for s in scope if isinstance(s, str)}


class HasScope(BasePermission):
    """Requires an authenticated request whose JWT grants ``required_scope``."""

    required_scope = SCOPE_UPDATE
    message = "The token does not grant the required scope."

    def has_permission(self, request: Request, view: APIView) -> bool:
        if request.user is None:
            return False
        return self.required_scope in token_scopes(request.auth)


class CanUpdateScores(HasScope):
    required_scope = SCOPE_UPDATE
    message = "The token does not grant update:scores."


class CanReadScores(HasScope):
    required_scope = SCOPE_READ
    message = "The token does not grant read:scores."
