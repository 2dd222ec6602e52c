"""Account writes: registration, tokens (login, refresh, logout), game-server keys."""

from __future__ import annotations

import hashlib
import re
import secrets
import uuid
from dataclasses import dataclass

from django.contrib.auth import authenticate
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone
from rest_framework.exceptions import ValidationError
from rest_framework_simplejwt.exceptions import TokenError
from rest_framework_simplejwt.settings import api_settings as jwt_settings
from rest_framework_simplejwt.tokens import RefreshToken

from accounts.authentication import PLAYER_SCOPES
from accounts.models import ExternalIdentity, GameServerKey, User
from accounts.selectors import (
    GAME_SERVER_KEY_PREFIX,
    external_identity_user,
    game_server_key_hash,
    game_server_key_matching,
)
from scoreboard.errors import Conflict, Unauthorized

GAME_SERVER_KEY_PREFIX_BYTES = 4  # 8 hex characters identify the key
GAME_SERVER_KEY_SECRET_BYTES = 32


@dataclass(frozen=True)
class TokenPair:
    access: str
    refresh: str
    expires_in: int
    user_id: str


def user_register(*, username: str, email: str, password: str) -> User:
    """Create a player. Taken username or email (case-insensitive) → 409; weak password → 400."""
    candidate = User(username=username, email=email)
    try:
        validate_password(password, user=candidate)
    except DjangoValidationError as exc:
        raise ValidationError({"password": list(exc.messages)}) from exc
    if User.objects.filter(username__iexact=username).exists():
        raise Conflict("That username is taken.", code="username_taken")
    if User.objects.filter(email__iexact=email).exists():
        raise Conflict("That email is already registered.", code="email_taken")
    candidate.set_password(password)
    try:
        with transaction.atomic():
            candidate.save(force_insert=True)
    except IntegrityError as exc:  # lost a race with a concurrent registration
        raise Conflict("That username or email is taken.", code="account_exists") from exc
    return candidate


# ---------------------------------------------------------------------------------------------
# Players of an external identity provider (OIDC)
# ---------------------------------------------------------------------------------------------
EXTERNAL_USERNAME_MAX_LENGTH = 40
EXTERNAL_USERNAME_FALLBACK = "player"
EXTERNAL_EMAIL_DOMAIN = "external.invalid"  # reserved TLD: these addresses never receive mail
_USERNAME_UNSAFE = re.compile(r"[^\w.@+-]")
_EXTERNAL_CREATE_ATTEMPTS = 5


def _external_username(display_name: str | None, issuer: str, subject: str, attempt: int) -> str:
    """The display name made a valid username; from the second attempt on, with a stable suffix."""
    base = _USERNAME_UNSAFE.sub("", (display_name or "").replace(" ", "_"))[:EXTERNAL_USERNAME_MAX_LENGTH]
    base = base or EXTERNAL_USERNAME_FALLBACK
    if attempt == 0:
        return base
    suffix = hashlib.sha256(f"{issuer}\n{subject}".encode()).hexdigest()[:6]
    if attempt > 1:
        suffix += secrets.token_hex(2)
    return f"{base[: EXTERNAL_USERNAME_MAX_LENGTH - len(suffix) - 1]}-{suffix}"


def external_player_resolve(*, issuer: str, subject: str, display_name: str | None) -> User:
    """The player of (issuer, subject); the first call creates it (unusable password, our UUID).

    Two concurrent first tokens of one subject create one player: the loser of the race on the
    (issuer, subject) constraint reads the winner's. A taken username gets a suffix.
    """
    user = external_identity_user(issuer=issuer, subject=subject)
    if user is not None:
        return user
    for attempt in range(_EXTERNAL_CREATE_ATTEMPTS):
        username = _external_username(display_name, issuer, subject, attempt)
        if User.objects.filter(username__iexact=username).exists():
            continue
        candidate = User(username=username)
        candidate.email = f"{candidate.pk.hex}@{EXTERNAL_EMAIL_DOMAIN}"
        candidate.set_unusable_password()
        try:
            with transaction.atomic():
                candidate.save(force_insert=True)
                ExternalIdentity.objects.create(issuer=issuer, subject=subject, user=candidate)
        except IntegrityError:
            user = external_identity_user(issuer=issuer, subject=subject)
            if user is not None:
                return user
            continue  # the username was taken meanwhile
        return candidate
    raise Conflict("No free username for this player; try again.", code="account_exists")


def _token_pair(refresh: RefreshToken, user_id: str) -> TokenPair:
    access = refresh.access_token
    return TokenPair(
        access=str(access),
        refresh=str(refresh),
        expires_in=int(jwt_settings.ACCESS_TOKEN_LIFETIME.total_seconds()),
        user_id=user_id,
    )


def player_tokens_issue(*, user: User) -> TokenPair:
    """A fresh session: a refresh/access pair carrying the player scopes and a new session id."""
    refresh = RefreshToken.for_user(user)
    refresh["scope"] = list(PLAYER_SCOPES)
    refresh["session_id"] = uuid.uuid4().hex
    return _token_pair(refresh, str(user.pk))


def user_login(*, username: str, password: str) -> TokenPair:
    user = authenticate(username=username, password=password)
    if user is None or not isinstance(user, User):
        raise Unauthorized("Wrong username or password.", code="invalid_credentials")
    return player_tokens_issue(user=user)


def _refresh_token_load(raw: str) -> RefreshToken:
    try:
        return RefreshToken(raw)  # type: ignore[arg-type]  # verifies signature, expiry, audience, issuer, blacklist
    except TokenError as exc:
        raise Unauthorized("The refresh token is invalid, expired or revoked.", code="token_not_valid") from exc


def player_tokens_refresh(*, refresh_token: str) -> TokenPair:
    """Rotate: the old refresh token is blacklisted and a new pair (same session) is issued."""
    refresh = _refresh_token_load(refresh_token)
    user_id = refresh.payload.get(jwt_settings.USER_ID_CLAIM)
    try:
        user = User.objects.filter(pk=user_id, is_active=True).first() if user_id else None
    except (DjangoValidationError, ValueError, TypeError):  # a subject that is not a UUID
        user = None
    if user is None:
        raise Unauthorized("No active account for this token.", code="no_active_account")
    try:
        _blacklisted, created = refresh.blacklist()  # type: ignore[misc]  # simplejwt returns get_or_create's pair
    except IntegrityError as exc:
        created = False
        cause: Exception | None = exc
    else:
        cause = None
    if not created:  # a concurrent refresh with the same token won the race: only one rotation per token
        raise Unauthorized("The refresh token was already used.", code="token_not_valid") from cause
    refresh.set_jti()
    refresh.set_exp()
    refresh.set_iat()
    refresh.outstand()
    return _token_pair(refresh, str(user.pk))


def player_logout(*, refresh_token: str) -> None:
    """Revoke the refresh token; access tokens already issued expire on their own (short lifetime)."""
    refresh = _refresh_token_load(refresh_token)
    refresh.blacklist()


# ---------------------------------------------------------------------------------------------
# Game-server keys
# ---------------------------------------------------------------------------------------------
def game_server_key_create(*, name: str) -> tuple[GameServerKey, str]:
    """Create a key and return it with the raw key, which is shown once and never stored."""
    prefix = secrets.token_hex(GAME_SERVER_KEY_PREFIX_BYTES)
    raw = f"{GAME_SERVER_KEY_PREFIX}_{prefix}_{secrets.token_urlsafe(GAME_SERVER_KEY_SECRET_BYTES)}"
    key = GameServerKey.objects.create(name=name, prefix=prefix, key_hash=game_server_key_hash(raw))
    return key, raw


def game_server_key_revoke(*, key: GameServerKey) -> None:
    key.is_active = False
    key.revoked_at = timezone.now()
    key.save(update_fields=["is_active", "revoked_at"])


def game_server_authenticate(*, raw_key: str) -> GameServerKey:
    """The active key matching ``raw_key`` or 401."""
    key = game_server_key_matching(raw_key=raw_key)
    if key is None:
        raise Unauthorized("A valid X-API-Key header is required.", code="invalid_api_key")
    GameServerKey.objects.filter(pk=key.pk).update(last_used_at=timezone.now())
    return key
