"""Access tokens from a studio's own identity provider (OIDC): configured issuers, JWKS, checks.

``OIDC_ISSUERS`` lists the trusted issuers, each ``{"issuer", "audience", "jwks_url"}`` with
optional ``username_claim`` (default ``preferred_username``), ``scopes_claim`` (scopes are then
read from that claim only; without it every player gets ``default_scopes``), ``default_scopes``
and ``algorithms`` (a subset of RS256, ES256, EdDSA).

A token is taken to be external when its (unverified) ``iss`` names a configured issuer; then it
must verify with one of that issuer's published keys, with the algorithm that key is for: an
``alg`` outside the allow-list (``none``, ``HS256`` signed with the public key...) or one that does
not match the key is refused before any signature check. ``exp``, ``iss``, ``aud`` and ``sub`` are
required, ``nbf`` is checked when present, all with ``OIDC_LEEWAY_SECONDS``.

Keys are fetched over HTTP(S) and cached per process for ``OIDC_JWKS_CACHE_SECONDS``. A token
whose ``kid`` is not in the cache (the provider rotated its keys) triggers one refetch, at most
once per ``OIDC_JWKS_REFETCH_SECONDS`` per issuer, so forged ``kid`` values cannot make us hammer
the provider. When the provider cannot be reached the keys already held keep working; with no
keys at all the answer is 503 (the player's token may be fine: it cannot be checked right now).
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import jwt
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from rest_framework_simplejwt.exceptions import AuthenticationFailed

from scoreboard.errors import ServiceUnavailable

logger = logging.getLogger(__name__)

ALLOWED_ALGORITHMS = ("RS256", "ES256", "EdDSA")
DEFAULT_USERNAME_CLAIM = "preferred_username"
MAX_JWKS_BYTES = 256 * 1024
MAX_SUBJECT_LENGTH = 255
_REQUIRED_FIELDS = ("issuer", "audience", "jwks_url")
_OPTIONAL_FIELDS = ("username_claim", "scopes_claim", "default_scopes", "algorithms")


@dataclass(frozen=True)
class Issuer:
    issuer: str
    audience: str
    jwks_url: str
    username_claim: str = DEFAULT_USERNAME_CLAIM
    scopes_claim: str | None = None
    default_scopes: tuple[str, ...] = ()
    algorithms: tuple[str, ...] = ALLOWED_ALGORITHMS


def _issuer_from_config(raw: Any, default_scopes: tuple[str, ...]) -> Issuer:
    if not isinstance(raw, dict):
        raise ImproperlyConfigured("OIDC_ISSUERS must be a JSON list of objects.")
    missing = [name for name in _REQUIRED_FIELDS if not isinstance(raw.get(name), str) or not raw.get(name)]
    unknown = sorted(set(raw) - set(_REQUIRED_FIELDS) - set(_OPTIONAL_FIELDS))
    if missing or unknown:
        raise ImproperlyConfigured(f"OIDC_ISSUERS entry {raw!r}: missing {missing}, unknown {unknown}.")
    if not raw["jwks_url"].startswith(("https://", "http://")):
        raise ImproperlyConfigured(f"OIDC_ISSUERS: jwks_url of {raw['issuer']} must be an http(s) URL.")
    algorithms = tuple(raw.get("algorithms") or ALLOWED_ALGORITHMS)
    if not algorithms or set(algorithms) - set(ALLOWED_ALGORITHMS):
        raise ImproperlyConfigured(f"OIDC_ISSUERS: algorithms of {raw['issuer']} must be among {ALLOWED_ALGORITHMS}.")
    scopes = raw.get("default_scopes")
    return Issuer(
        issuer=raw["issuer"],
        audience=raw["audience"],
        jwks_url=raw["jwks_url"],
        username_claim=raw.get("username_claim") or DEFAULT_USERNAME_CLAIM,
        scopes_claim=raw.get("scopes_claim") or None,
        default_scopes=tuple(scopes) if isinstance(scopes, list) else default_scopes,
        algorithms=algorithms,
    )


def configured_issuers(default_scopes: tuple[str, ...]) -> dict[str, Issuer]:
    """The configured issuers by their ``iss`` value (ImproperlyConfigured on a bad entry)."""
    raw = settings.OIDC_ISSUERS
    if not isinstance(raw, list):
        raise ImproperlyConfigured("OIDC_ISSUERS must be a JSON list of objects.")
    issuers = [_issuer_from_config(entry, default_scopes) for entry in raw]
    return {issuer.issuer: issuer for issuer in issuers}


# ---------------------------------------------------------------------------------------------
# JWKS cache
# ---------------------------------------------------------------------------------------------
@dataclass
class _KeySet:
    keys: list[jwt.PyJWK] = field(default_factory=list)
    loaded_at: float = float("-inf")  # monotonic time of the last fetch that worked
    attempted_at: float = float("-inf")  # ... of the last attempt
    refetched_at: float = float("-inf")  # ... of the last attempt an unknown kid asked for

    def find(self, kid: str | None, alg: str) -> jwt.PyJWK | None:
        usable = [k for k in self.keys if k.algorithm_name == alg and k.public_key_use in (None, "sig")]
        if kid is None:
            return usable[0] if len(usable) == 1 else None
        return next((k for k in usable if k.key_id == kid), None)


def _fetch_jwks(url: str) -> list[jwt.PyJWK]:
    request = urllib.request.Request(url, headers={"Accept": "application/json"})  # noqa: S310  (http(s) only: checked in config)
    with urllib.request.urlopen(request, timeout=settings.OIDC_JWKS_TIMEOUT_SECONDS) as response:  # noqa: S310
        body = response.read(MAX_JWKS_BYTES + 1)
    if len(body) > MAX_JWKS_BYTES:
        raise ValueError("JWKS document too large")
    document = json.loads(body)
    keys = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(keys, list):
        raise ValueError("JWKS document has no keys list")
    usable = []
    for entry in keys:
        if not isinstance(entry, dict):
            continue
        try:
            key = jwt.PyJWK(entry)
        except jwt.PyJWTError:
            continue  # a key type or curve we do not use
        if key.algorithm_name in ALLOWED_ALGORITHMS:  # never an "oct" (HMAC) key
            usable.append(key)
    return usable


class JwksCache:
    """Per-process cache of each issuer's keys, with a rate-limited refetch for unknown kids."""

    def __init__(self) -> None:
        self._sets: dict[str, _KeySet] = {}
        self._lock = threading.Lock()
        self.fetches = 0  # how many times a JWKS was requested (tests and metrics read it)

    def clear(self) -> None:
        with self._lock:
            self._sets.clear()
            self.fetches = 0

    def _refresh(self, issuer: Issuer, *, unknown_kid: bool) -> _KeySet:
        with self._lock:
            current = self._sets.setdefault(issuer.jwks_url, _KeySet())
            now = time.monotonic()
            budget = settings.OIDC_JWKS_REFETCH_SECONDS
            if unknown_kid:
                if now - current.refetched_at < budget:
                    return current  # an unknown kid already cost a fetch just now
                current.refetched_at = now
            elif now - current.loaded_at < settings.OIDC_JWKS_CACHE_SECONDS or now - current.attempted_at < budget:
                return current  # another thread refreshed it meanwhile, or the provider just failed
            current.attempted_at = now
            self.fetches += 1
            try:
                keys = _fetch_jwks(issuer.jwks_url)
            except (OSError, ValueError) as exc:
                logger.warning("JWKS fetch failed for %s: %s", issuer.issuer, exc)
                return current  # keep what we had: a provider outage must not log everybody out
            current.keys, current.loaded_at = keys, now
            return current

    def key(self, issuer: Issuer, kid: str | None, alg: str) -> jwt.PyJWK | None:
        current = self._sets.get(issuer.jwks_url)
        if current is None or time.monotonic() - current.loaded_at >= settings.OIDC_JWKS_CACHE_SECONDS:
            current = self._refresh(issuer, unknown_kid=False)
        found = current.find(kid, alg)
        if found is None and current.keys:
            current = self._refresh(issuer, unknown_kid=True)
            found = current.find(kid, alg)
        if found is None and not current.keys:
            raise ServiceUnavailable(
                "The identity provider's keys cannot be fetched right now.", code="identity_provider_unavailable"
            )
        return found


jwks_cache = JwksCache()


# ---------------------------------------------------------------------------------------------
# Verification
# ---------------------------------------------------------------------------------------------
class ExternalAccessToken(Mapping[str, Any]):
    """A verified external token, shaped like simplejwt's tokens for the code that reads them.

    ``scope`` holds the scopes *we* grant (from the configured claim, or the issuer's default),
    not whatever the provider put under that name.
    """

    def __init__(self, issuer: Issuer, claims: dict[str, Any], scopes: list[str]) -> None:
        self.issuer = issuer
        self.claims = claims
        self.payload = {**claims, "scope": scopes}

    def __getitem__(self, key: str) -> Any:
        return self.payload[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.payload)

    def __len__(self) -> int:
        return len(self.payload)

    @property
    def subject(self) -> str:
        return str(self.claims["sub"])

    @property
    def display_name(self) -> str | None:
        value = self.claims.get(self.issuer.username_claim)
        return value if isinstance(value, str) else None


def _granted_scopes(issuer: Issuer, claims: dict[str, Any], known: tuple[str, ...]) -> list[str]:
    if issuer.scopes_claim is None:
        return list(issuer.default_scopes)
    raw = claims.get(issuer.scopes_claim, [])
    if isinstance(raw, str):
        values = raw.split()
    else:
        values = [s for s in raw if isinstance(s, str)] if isinstance(raw, list) else []
    return [scope for scope in known if scope in values]


def _refuse(message: str) -> AuthenticationFailed:
    return AuthenticationFailed(message, code="token_not_valid")


def verify_external_token(raw: bytes | str, *, known_scopes: tuple[str, ...]) -> ExternalAccessToken | None:
    """The verified token when ``raw`` comes from a configured issuer; None when it does not.

    None means "not ours to judge" (simplejwt then checks it as one of our own tokens, which an
    unconfigured issuer's token fails); a token of a configured issuer is verified here or refused
    with 401 (503 when the provider's keys cannot be had at all).
    """
    if not settings.OIDC_ISSUERS:
        return None
    try:
        unverified = jwt.decode(raw, options={"verify_signature": False})
        header = jwt.get_unverified_header(raw)
    except jwt.PyJWTError:
        return None
    iss = unverified.get("iss") if isinstance(unverified, dict) else None
    issuer = configured_issuers(known_scopes).get(iss) if isinstance(iss, str) else None
    if issuer is None:
        return None
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in issuer.algorithms:
        raise _refuse("The token's algorithm is not accepted for this issuer.")
    kid = header.get("kid")
    key = jwks_cache.key(issuer, kid if isinstance(kid, str) else None, alg)
    if key is None:
        raise _refuse("The token was signed with a key the issuer does not publish.")
    try:
        claims = jwt.decode(
            raw,
            key.key,
            algorithms=[key.algorithm_name],
            audience=issuer.audience,
            issuer=issuer.issuer,
            leeway=settings.OIDC_LEEWAY_SECONDS,
            options={"require": ["exp", "iss", "aud", "sub"]},
        )
    except jwt.PyJWTError as exc:
        raise _refuse(f"The token is not valid: {exc}") from exc
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject or len(subject) > MAX_SUBJECT_LENGTH:
        raise _refuse("The token's subject is missing or too long.")
    return ExternalAccessToken(issuer, claims, _granted_scopes(issuer, claims, known_scopes))
