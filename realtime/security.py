"""Origin check for WebSockets: browsers must come from an allowed host; non-browser clients pass.

channels' ``AllowedHostsOriginValidator`` also refuses handshakes without an Origin header, which
shuts out game clients and servers (they do not send one). The Origin check exists to stop other
web sites from opening sockets with a visitor's cookies, and browsers always send Origin, so a
missing header is allowed and a present one must match ``ALLOWED_HOSTS``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import ParseResult

from channels.security.websocket import OriginValidator
from django.conf import settings


class BrowserOriginValidator(OriginValidator):
    def valid_origin(self, parsed_origin: ParseResult | None) -> bool:
        if parsed_origin is None:
            return True
        return bool(self.validate_origin(parsed_origin))


def allowed_hosts_origin_validator(application: Any) -> BrowserOriginValidator:
    allowed_hosts = settings.ALLOWED_HOSTS
    if settings.DEBUG and not allowed_hosts:
        allowed_hosts = ["localhost", "127.0.0.1", "[::1]"]
    return BrowserOriginValidator(application, allowed_hosts)
