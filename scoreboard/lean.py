"""The lean request path: the hot endpoints skip the middleware they do not use.

``POST /v1/scores/update`` and ``GET /v1/leaderboard`` are authenticated by a bearer JWT (or not at
all) and answer JSON: they never read a session, Django's session user or a flash message. Django's
middleware for those still do their work on every request (a session store, a lazy user, a message
storage), so in ``MIDDLEWARE`` they are replaced by these subclasses, which behave exactly as
Django's everywhere else (admin, the spectator page, the other API endpoints) and pass the lean
paths straight through. The security headers (Security, X-Frame-Options), ``CommonMiddleware``,
Django's own ``CsrfViewMiddleware`` (``check --deploy`` asks for it by name; both views are
csrf-exempt DRF views, so it returns at once), the request id, metrics, the per-IP limit, the body
limit and the JSON error middleware stay on for every path.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.middleware import AuthenticationMiddleware
from django.contrib.messages.middleware import MessageMiddleware
from django.contrib.sessions.middleware import SessionMiddleware
from django.http import HttpRequest

# Exact paths (no trailing slash: the API has none). Only endpoints that authenticate with a bearer
# token or not at all belong here.
LEAN_PATHS = frozenset({"/v1/scores/update", "/v1/leaderboard"})


def is_lean(request: HttpRequest) -> bool:
    return request.path_info in LEAN_PATHS


class LeanSessionMiddleware(SessionMiddleware):
    def __call__(self, request: HttpRequest) -> Any:
        return self.get_response(request) if is_lean(request) else super().__call__(request)


class LeanAuthenticationMiddleware(AuthenticationMiddleware):
    """DRF authenticates these requests itself (``request.user`` is DRF's, from the JWT)."""

    def __call__(self, request: HttpRequest) -> Any:
        return self.get_response(request) if is_lean(request) else super().__call__(request)


class LeanMessageMiddleware(MessageMiddleware):
    def __call__(self, request: HttpRequest) -> Any:
        return self.get_response(request) if is_lean(request) else super().__call__(request)
