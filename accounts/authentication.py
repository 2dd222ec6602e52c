"""JWT authentication with scopes: expired/forged tokens are 401, disabled players are 403."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.db import DEFAULT_DB_ALIAS
from rest_framework.permissions import BasePermission
from rest_framework_simplejwt.authentication import JWTAuthentication
from rest_framework_simplejwt.exceptions import AuthenticationFailed
from rest_framework_simplejwt.settings import api_settings
from rest_framework_simplejwt.tokens import Token

from accounts import cards, oidc
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

    ``cards=True`` (``POST /v1/scores/update`` only): with PostgreSQL and Redis, one of our own
    tokens names a :func:`pending_player` instead of looking the player up; the update's pre-write
    Redis call checks the player's card, and the write checks the row (``accounts.cards``). An
    external issuer's token, or no Redis (the embedded default): the lookup, as everywhere else.
    """

    def __init__(self, *, cards: bool = False) -> None:
        super().__init__()
        self.cards = cards

    def get_validated_token(self, raw_token: bytes) -> Token | oidc.ExternalAccessToken:  # type: ignore[override]
        external = oidc.verify_external_token(raw_token, known_scopes=PLAYER_SCOPES)
        return external if external is not None else super().get_validated_token(raw_token)

    def get_user(self, validated_token: Token | oidc.ExternalAccessToken) -> User:  # type: ignore[override]
        if isinstance(validated_token, oidc.ExternalAccessToken):
            return external_player(validated_token)
        if self.cards and cards.cards_usable():
            try:
                return pending_player(uuid.UUID(token_subject(validated_token)))
            except ValueError:
                pass  # not a UUID: "does not exist", as the lookup answers
        return player_checked(user_id=token_subject(validated_token), epoch=token_epoch(validated_token))

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="scoreboard"'


def pending_player(user_id: uuid.UUID) -> User:
    """The token's player before anything vouched for them (``accounts.cards``): only the id is
    loaded; every other field is deferred, so reading one loads it from PostgreSQL rather than
    answering a default."""
    user = User.from_db(DEFAULT_DB_ALIAS, ["id"], [user_id])
    setattr(user, cards.PENDING_ATTRIBUTE, True)
    return user


@dataclass(frozen=True)
class SessionCheck:
    """What the score write checks of the token's session on the player's row (``SUBMIT_SQL``):
    one of our tokens' epoch, or an external issuer's token's ``iat`` (``sessions_revoked_at``)."""

    epoch: int | None = None
    external: bool = False
    issued_at: float | None = None

    @classmethod
    def of(cls, token: object) -> SessionCheck | None:
        if isinstance(token, oidc.ExternalAccessToken):
            issued_at = token.get("iat")
            ok = isinstance(issued_at, int | float) and not isinstance(issued_at, bool)
            return cls(external=True, issued_at=float(issued_at) if ok else None)  # type: ignore[arg-type]
        if isinstance(token, Token):
            return cls(epoch=token_epoch(token))
        return None


def token_subject(token: Token) -> str:
    try:
        return str(token[api_settings.USER_ID_CLAIM])
    except KeyError as exc:
        raise AuthenticationFailed("The token carries no subject.", code="token_not_valid") from exc


def token_epoch(token: Any) -> int:
    return int(token.get(EPOCH_CLAIM, 0) or 0)


def player_checked(*, user_id: str, epoch: int) -> User:
    """The player of one of our tokens, from PostgreSQL: 401 when there is none or the token's
    epoch is not the player's (signed out), 403 when the account is disabled."""
    user = user_by_id(user_id=user_id)
    refusal = player_refusal(user, epoch=epoch)
    if refusal is not None:
        raise refusal
    assert user is not None
    return user


def player_refusal(
    user: User | None, *, epoch: int | None = None, issued_at: object = None, external: bool = False
) -> Exception | None:
    """What authentication answers for this player and session: 401 (no player, signed out), 403
    (disabled), or None. ``epoch`` of one of our tokens; ``issued_at`` of an external one."""
    if user is None:
        return AuthenticationFailed("The token's player does not exist.", code="user_not_found")
    if not user.is_active:
        return Forbidden("This account is disabled.", code="account_disabled")
    if external:
        if not external_session_valid(issued_at, user):
            return Unauthorized("This session was signed out; log in again.", code="session_revoked")
    elif epoch is not None and epoch != user.token_epoch:
        return Unauthorized("This session was signed out; log in again.", code="session_revoked")
    return None


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
    if not external_session_valid(token.get("iat"), user):
        raise Unauthorized("This session was signed out; log in again.", code="session_revoked")


def external_session_valid(issued_at: object, user: User) -> bool:
    """An external token issued (``iat``) after the player's last revocation (whole seconds)."""
    revoked_at = user.sessions_revoked_at
    if revoked_at is None:
        return True
    return isinstance(issued_at, int | float) and issued_at > int(revoked_at.timestamp())


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
