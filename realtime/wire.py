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
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

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
            scope = dict(scope)
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


def raw_writer(server_send: Any) -> RawWrite | None:
    """A pre-framed writer for this socket, or None when its server does not allow one."""
    protocol = getattr(server_send, "__self__", None)
    if protocol is None:
        return None
    try:
        from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
        from websockets.protocol import State
    except ImportError:  # pragma: no cover - uvicorn (or websockets) not installed: daphne only
        return None
    if type(protocol) is not WebSocketsSansIOProtocol or server_send != protocol.send:
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

    def write_frame(wire: bytes) -> bool:
        if (
            not is_set()  # paused by flow control: the ASGI send waits for the drain
            or protocol.close_sent
            or protocol.disconnected
            or not protocol.handshake_complete
            or conn.state is not opened
            or is_closing()
        ):
            return False
        try:
            write(wire)
        except Exception:  # the transport refused: the ASGI send takes this frame (and reports the failure)
            return False
        return True

    return write_frame
