"""Account writes: registration, tokens (login, refresh, logout), game-server keys."""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import re
import secrets
import time
import uuid
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth import authenticate
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone
from rest_framework.exceptions import ValidationError
from rest_framework_simplejwt.exceptions import TokenError
from rest_framework_simplejwt.settings import api_settings as jwt_settings
from rest_framework_simplejwt.tokens import RefreshToken

from accounts import cards
from accounts.models import ExternalIdentity, GameServerKey, User
from accounts.scopes import EPOCH_CLAIM, PLAYER_SCOPES
from accounts.selectors import (
    GAME_SERVER_KEY_PREFIX,
    external_identity_user,
    game_server_key_hash,
    game_server_key_matching,
)
from scoreboard.errors import Conflict, Unauthorized

logger = logging.getLogger(__name__)

AUTH_TIME_CLAIM = "auth_time"  # when the session began (login): its absolute lifetime counts from here
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
    # simplejwt takes the access token's exp from the refresh token's clock but its iat from a clock
    # of its own, read later: across a second boundary exp - iat came out one second short of the
    # lifetime the response announces. The pair is issued at one instant.
    access.set_iat(at_time=refresh.current_time)
    return TokenPair(
        access=str(access),
        refresh=str(refresh),
        expires_in=int(jwt_settings.ACCESS_TOKEN_LIFETIME.total_seconds()),
        user_id=user_id,
    )


def player_tokens_issue(*, user: User) -> TokenPair:
    """A fresh session: a refresh/access pair carrying the player scopes, a new session id, the
    player's token epoch (revocation) and the session's start (its absolute lifetime)."""
    refresh = RefreshToken.for_user(user)
    refresh["scope"] = list(PLAYER_SCOPES)
    refresh["session_id"] = uuid.uuid4().hex
    refresh[EPOCH_CLAIM] = user.token_epoch
    refresh[AUTH_TIME_CLAIM] = int(time.time())
    _session_exp_cap(refresh)
    cards.card_offer(user)  # the row was just read: the session's first score update is warm
    return _token_pair(refresh, str(user.pk))


def _session_ends_at(refresh: RefreshToken) -> int:
    started = int(refresh.payload.get(AUTH_TIME_CLAIM) or refresh.payload.get("iat") or time.time())
    return started + int(settings.JWT_SESSION_MAX_LIFETIME.total_seconds())


def _session_exp_cap(refresh: RefreshToken) -> None:
    """A refresh token never outlives its session's absolute lifetime, however often it is rotated."""
    refresh.payload["exp"] = min(int(refresh.payload["exp"]), _session_ends_at(refresh))


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
    if int(refresh.payload.get(EPOCH_CLAIM, 0) or 0) != user.token_epoch:
        raise Unauthorized("This session was signed out; log in again.", code="session_revoked")
    session_ends_at = _session_ends_at(refresh)
    if time.time() >= session_ends_at:
        raise Unauthorized("This session reached its maximum lifetime; log in again.", code="session_expired")
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
    # The session keeps its start (tokens from before this claim existed: their last issue time).
    refresh.payload[AUTH_TIME_CLAIM] = session_ends_at - _session_seconds()
    _session_exp_cap(refresh)
    refresh.outstand()
    return _token_pair(refresh, str(user.pk))


def _session_seconds() -> int:
    return int(settings.JWT_SESSION_MAX_LIFETIME.total_seconds())


def player_sessions_revoke(*, user_id: str, reason: str) -> None:
    """Sign the player out everywhere: every token issued so far stops working (the epoch they
    carry is no longer the player's), and the player's open sockets are closed after the commit.

    Called by a password change (``User.set_password`` raises the epoch itself), a ban, and
    "sign out everywhere" (``POST /v1/auth/logout-all``).
    """
    User.objects.filter(pk=user_id).update(token_epoch=F("token_epoch") + 1, sessions_revoked_at=timezone.now())
    logger.info("sessions of %s revoked (%s)", user_id, reason)
    transaction.on_commit(lambda: sockets_close(user_id))


def sockets_close(user_id: str) -> None:
    from realtime import services as realtime_services  # realtime imports accounts: no cycle at import

    realtime_services.player_signed_out(user_id=user_id)


def outstanding_tokens_purge(*, now: dt.datetime | None = None) -> int:
    """Delete simplejwt's outstanding refresh tokens that expired (their blacklist rows go with them)."""
    from rest_framework_simplejwt.token_blacklist.models import OutstandingToken

    deleted, _ = OutstandingToken.objects.filter(expires_at__lt=now or timezone.now()).delete()
    return int(deleted)


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
