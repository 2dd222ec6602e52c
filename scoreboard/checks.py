"""System checks shown when a server starts: say loudly when development secrets are in use."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Tags, register
from django.core.checks import Warning as CheckWarning


@register(Tags.security, deploy=False)
def development_secrets(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    if not settings.USING_DEV_SECRETS:
        return []
    return [
        CheckWarning(
            f"Using development values for {', '.join(settings.USING_DEV_SECRETS)}.",
            hint="Fine for the embedded demo; set real secrets and DJANGO_DEBUG=0 in production "
            "(the service then refuses to start without them).",
            id="scoreboard.W001",
        )
    ]
