"""The WSGI environ of a score update, shared by ``bench.profile_update`` and the lean floor's test.

A module of its own, with no side effect on import: ``bench.profile_update`` sets its secrets and
limits in ``os.environ`` when imported, which a test process would pass on to the servers it starts.
"""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Callable
from typing import Any


def update_environ(action_token: str, jwt: str) -> dict[str, Any]:
    """The WSGI environ of one ``POST /v1/scores/update`` from 127.0.0.1 (the harness's and the lean
    floor test's request)."""
    body = json.dumps({"action_token": action_token}).encode()
    return {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/v1/scores/update",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "HTTP_HOST": "127.0.0.1",
        "REMOTE_ADDR": "127.0.0.1",
        "CONTENT_TYPE": "application/json",
        "CONTENT_LENGTH": str(len(body)),
        "HTTP_AUTHORIZATION": f"Bearer {jwt}",
        "wsgi.input": io.BytesIO(body),
        "wsgi.url_scheme": "http",
        "wsgi.errors": sys.stderr,
    }


def wsgi_status(app: Callable[..., Any], environ: dict[str, Any]) -> int:
    """Call a WSGI application as a server would (the body read, the response closed): its status code."""
    status: list[str] = []
    response = app(environ, lambda s, h, *a: status.append(s))
    b"".join(response)
    getattr(response, "close", lambda: None)()
    return int(status[0].split()[0])
