"""Request ids: one per HTTP request or WebSocket connection, on every log line and every response.

nginx generates ``X-Request-ID`` (``$request_id``) and passes it upstream, so nginx's access log,
the application's lines and the client's response header all carry the same id. Without nginx a
fresh id is made here. Refused requests (401/403/429) are logged once as security events.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from django.http import HttpRequest, HttpResponse

from scoreboard import logging as sb_logging
from scoreboard.net import client_ip

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_META_HEADER = "HTTP_" + sb_logging.REQUEST_ID_HEADER.upper().replace("-", "_")
_SCOPE_HEADER = sb_logging.REQUEST_ID_HEADER.lower().encode("latin-1")

# Statuses that mean "we refused this client" and are worth a security line.
_SECURITY_EVENTS = {401: "failed_auth", 403: "forbidden", 429: "request_blocked"}


def _error_code(response: HttpResponse) -> str | None:
    """The envelope's ``error.code`` of a small JSON error response (never reads a stream)."""
    if getattr(response, "streaming", False) or "json" not in response.get("Content-Type", ""):
        return None
    data = getattr(response, "data", None)  # DRF's Response keeps the parsed body
    if isinstance(data, dict) and isinstance(data.get("error"), dict):
        code = data["error"].get("code")
        return str(code) if code is not None else None
    try:
        body = json.loads(response.content[:4096])
    except ValueError:
        return None
    error = body.get("error") if isinstance(body, dict) else None
    return str(error.get("code")) if isinstance(error, dict) and error.get("code") else None


class RequestIdMiddleware:
    """Binds the request id for the request, echoes it in ``X-Request-ID``, logs refusals."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request_id = sb_logging.clean_request_id(request.META.get(_META_HEADER))
        request.request_id = request_id  # type: ignore[attr-defined]
        token = sb_logging.set_request_id(request_id)
        try:
            response = self.get_response(request)
            response[sb_logging.REQUEST_ID_HEADER] = request_id
            if response.status_code in _SECURITY_EVENTS:
                refusal_log(
                    response.status_code, _error_code(response), request.method or "", request.path, request.META
                )
            return response
        finally:
            sb_logging.reset_request_id(token)


def refusal_log(status: int, code: str | None, method: str, path: str, meta: Any) -> None:
    """The security line of a refused request (401, 403, 429), if ``status`` is one."""
    event = _SECURITY_EVENTS.get(status)
    if event is not None:
        sb_logging.security_event(
            event,
            f"refused {method} {path} with {status}",
            status=status,
            code=code,
            method=method,
            path=path,
            client_ip=client_ip(meta),
        )


class RequestIdASGIMiddleware:
    """ASGI wrapper binding the id for a whole WebSocket connection or HTTP exchange.

    Every line a consumer logs while serving the connection carries it, and so does every line an
    HTTP streaming response (SSE) logs after Django's middleware has returned. The id is written
    back into the scope's headers, so ``RequestIdMiddleware`` reuses the same one;
    ``scope["request_id"]`` holds it for consumers that want to send it to the client.
    """

    def __init__(self, inner: ASGIApp) -> None:
        self.inner = inner

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") not in ("websocket", "http"):
            await self.inner(scope, receive, send)
            return
        supplied = next((v.decode("latin-1") for k, v in scope.get("headers", []) if k == _SCOPE_HEADER), None)
        with sb_logging.bound_request_id(supplied) as request_id:
            headers = [(k, v) for k, v in scope.get("headers", []) if k != _SCOPE_HEADER]
            headers.append((_SCOPE_HEADER, request_id.encode("latin-1")))
            if scope["type"] == "websocket":
                # A socket's scope lives as long as the socket: change the server's in place (the
                # outer CaptureServerSend does too) rather than keep a second copy of it and its headers.
                scope["headers"] = headers
                scope["request_id"] = request_id
            else:
                scope = dict(scope, request_id=request_id, headers=headers)
            await self.inner(scope, receive, send)
