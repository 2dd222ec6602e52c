"""Pushed frames written pre-framed, straight to the server's transport, where the server allows it.

A frame from server to client is not masked (RFC 6455, 5.1), so a snapshot's bytes on the wire are
the same for every socket: the process frames it once (``Frame.ws_wire``) and each socket costs one
``transport.write``, instead of an ASGI send per socket (two coroutines, encoding the text, framing
it again, joining the output) for the same bytes.

Only for uvicorn's sans-I/O websockets protocol (``--ws websockets-sansio``, what deploy/serve.py
runs) with no extension negotiated (``--ws-per-message-deflate false``: a compressed socket needs its
own bytes). The writer is used only while the connection is open, the handshake done, no close sent
and the transport not paused by flow control; otherwise it declines and the frame takes the ASGI
send, which waits for the buffer to drain (the hub's slow-client path). Any other server (daphne,
uvicorn's other protocols) always takes the ASGI send.

The server's own ``send`` is only reachable from outside the application's middleware:
``CaptureServerSend`` wraps the WebSocket application and keeps it in the scope for the consumer.

It cannot silently break: requirements.in pins the uvicorn and websockets releases it was verified
with (``realtime.releases.VERIFIED_RELEASES``); each process checks once (``preframed_problem``, run when the ASGI
application is built) that the installed releases are those and that uvicorn's protocol still has
every attribute the writer reads. When not, or when ``REALTIME_PREFRAMED_WRITES`` is off, the
process logs one warning, sets ``scoreboard_realtime_preframed_writer`` to 0 and every socket takes
the ASGI send. Anything unexpected later (an attribute gone, a raise) makes that socket's writer
decline for good, counted in ``scoreboard_realtime_preframed_fallbacks``; a connect never fails
because of the writer.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

from prometheus_client import Counter, Gauge

from realtime.releases import releases_problem

logger = logging.getLogger(__name__)

# What the writer reads from uvicorn's WebSocketsSansIOProtocol (set by its methods).
PROTOCOL_ATTRIBUTES = ("conn", "writable", "transport", "close_sent", "disconnected", "handshake_complete")

PREFRAMED_WRITER = Gauge(
    "scoreboard_realtime_preframed_writer",
    "1 when this process writes pushed frames pre-framed to the transport, 0 when it uses the ASGI send.",
    multiprocess_mode="liveall",
)
PREFRAMED_FALLBACKS = Counter(
    "scoreboard_realtime_preframed_fallbacks",
    "Times the pre-framed writer was not used: at process start (disabled, internals) or for one socket (error).",
    ["reason"],
)

# The scope key under which ``CaptureServerSend`` keeps the server's own ``send``.
SERVER_SEND = "realtime.server_send"

# Writes pre-framed bytes; False when it cannot right now (the caller then uses the ASGI send).
RawWrite = Callable[[bytes], bool]


class CaptureServerSend:
    """ASGI middleware: keeps the server's ``send`` of a WebSocket in ``scope[SERVER_SEND]``."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope.get("type") == "websocket":
            # Outermost, so the server's scope itself takes the key: a copy would stay referenced
            # for the socket's life beside the server's own (memory per idle socket).
            scope[SERVER_SEND] = send
        await self.inner(scope, receive, send)


def text_frame(payload: bytes) -> bytes:
    """One unmasked, unfragmented text frame carrying ``payload`` (UTF-8)."""
    size = len(payload)
    if size < 126:
        head = bytes((0x81, size))
    elif size < 1 << 16:
        head = b"\x81\x7e" + size.to_bytes(2, "big")
    else:
        head = b"\x81\x7f" + size.to_bytes(8, "big")
    return head + payload


def _internals_problem() -> str | None:
    if problem := releases_problem():
        return problem
    try:
        from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
        from websockets.protocol import State
    except ImportError as exc:
        return f"uvicorn's sans-I/O protocol cannot be imported ({exc})"
    if not hasattr(State, "OPEN") or not callable(getattr(WebSocketsSansIOProtocol, "send", None)):
        return "websockets' State.OPEN or uvicorn's protocol send() is gone"
    # Instance attributes are set by the protocol's methods: every one the writer reads must be.
    assigned: set[str] = set()
    for member in vars(WebSocketsSansIOProtocol).values():
        code = getattr(member, "__code__", None)
        if code is not None:
            assigned.update(code.co_names)
    missing = [name for name in PROTOCOL_ATTRIBUTES if name not in assigned]
    if missing:
        return f"uvicorn's WebSocketsSansIOProtocol no longer sets {', '.join(missing)}"
    return None


@functools.cache
def preframed_problem() -> str | None:
    """Why this process does not write pre-framed (logged once, in the metric), or None when it does.

    Checked once per process; the ASGI application calls it at start, so the log line and the metric
    are there before the first socket.
    """
    from django.conf import settings

    problem: str | None
    if not getattr(settings, "REALTIME_PREFRAMED_WRITES", True):
        problem, reason = "disabled by REALTIME_PREFRAMED_WRITES", "disabled"
    else:
        try:
            problem, reason = _internals_problem(), "internals"
        except Exception as exc:  # a check that breaks is itself a reason not to trust the internals
            problem, reason = f"the check of uvicorn's internals failed ({exc!r})", "internals"
    if problem is None:
        PREFRAMED_WRITER.set(1)
        return None
    PREFRAMED_WRITER.set(0)
    PREFRAMED_FALLBACKS.labels(reason=reason).inc()
    logger.warning("realtime: pushed frames take the ASGI send (slower, still correct): %s", problem)
    return problem


def raw_writer(server_send: Any) -> RawWrite | None:
    """A pre-framed writer for this socket, or None when its server does not allow one. Never raises."""
    protocol = getattr(server_send, "__self__", None)
    if protocol is None or preframed_problem() is not None:
        return None
    try:
        return _writer(server_send, protocol)
    except Exception:
        logger.warning("realtime: no pre-framed writer for a socket; it takes the ASGI send", exc_info=True)
        PREFRAMED_FALLBACKS.labels(reason="error").inc()
        return None


def _writer(server_send: Any, protocol: Any) -> RawWrite | None:
    from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
    from websockets.protocol import State

    from realtime.protocol import LeanWebSocketProtocol

    # uvicorn's protocol, or realtime.protocol's subclass of it (it only holds less per socket).
    if type(protocol) not in (WebSocketsSansIOProtocol, LeanWebSocketProtocol) or server_send != protocol.send:
        return None
    conn = protocol.conn
    if conn.extensions:  # per-message deflate negotiated: every socket needs its own compressed bytes
        return None
    writable = protocol.writable
    transport = protocol.transport
    is_set = writable.is_set
    is_closing = transport.is_closing
    write = transport.write
    opened = State.OPEN
    broken = False

    def write_frame(wire: bytes) -> bool:
        nonlocal broken
        if broken:
            return False
        try:
            if (
                not is_set()  # paused by flow control: the ASGI send waits for the drain
                or protocol.close_sent
                or protocol.disconnected
                or not protocol.handshake_complete
                or conn.state is not opened
                or is_closing()
            ):
                return False
        except Exception:  # the internals changed under us: this socket takes the ASGI send from now on
            broken = True
            logger.warning("realtime: the pre-framed writer failed; the socket takes the ASGI send", exc_info=True)
            PREFRAMED_FALLBACKS.labels(reason="error").inc()
            return False
        try:
            write(wire)
        except Exception:  # the transport refused: the ASGI send takes this frame (and reports the failure)
            return False
        return True

    return write_frame
