"""Rotating ``JWT_SECRET`` without logging everybody out: sign with the new key, accept the old.

With ``JWT_SECRET_PREVIOUS`` set, a token whose signature fails under ``JWT_SECRET`` is checked
again under the previous key (never used to sign). Expiry, audience and issuer are enforced the
same way under either key. Once every token signed with the old key has expired (the refresh
lifetime, ``JWT_REFRESH_DAYS``), unset ``JWT_SECRET_PREVIOUS``. See docs/runbook.md.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from rest_framework_simplejwt.backends import TokenBackend
from rest_framework_simplejwt.exceptions import TokenBackendError, TokenBackendExpiredToken


class RotatingTokenBackend(TokenBackend):
    def __init__(self, *args: Any, previous_signing_keys: tuple[str, ...] = (), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.previous = tuple(
            TokenBackend(
                self.algorithm,
                key,
                "",  # HMAC: verified with the signing key itself
                self.audience,
                self.issuer,
                None,
                self.leeway,
                self.json_encoder,
            )
            for key in previous_signing_keys
            if key
        )

    def decode(self, token: Any, verify: bool = True) -> dict[str, Any]:
        try:
            return super().decode(token, verify)
        except TokenBackendExpiredToken:
            raise
        except TokenBackendError:
            if not verify or not self.previous:
                raise
            for backend in self.previous:
                try:
                    return backend.decode(token, verify)
                except TokenBackendExpiredToken:
                    raise
                except TokenBackendError:
                    continue
            raise


def install() -> None:
    """Replace simplejwt's process-wide token backend when a previous secret is configured."""
    previous = getattr(settings, "JWT_SECRET_PREVIOUS", "")
    if not previous:
        return
    from rest_framework_simplejwt import state
    from rest_framework_simplejwt.settings import api_settings

    state.token_backend = RotatingTokenBackend(
        api_settings.ALGORITHM,
        api_settings.SIGNING_KEY,
        api_settings.VERIFYING_KEY,
        api_settings.AUDIENCE,
        api_settings.ISSUER,
        api_settings.JWK_URL,
        api_settings.LEEWAY,
        api_settings.JSON_ENCODER,
        previous_signing_keys=(previous,),
    )
