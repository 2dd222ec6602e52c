"""uvicorn's sans-I/O WebSocket protocol, with less memory held by each idle socket.

    uvicorn ... --ws realtime.protocol:LeanWebSocketProtocol

Measured with ``python -m bench.socket_memory --trace`` (tracemalloc in the server), an idle live
board socket held about 30 KB of Python heap, half of it in uvicorn's protocol object: an
``asyncio.Queue`` (four deques: its items, getters, putters and its ``_finished`` event's waiters,
a 600-byte block each even when empty), an ``asyncio.Event`` for flow control (one more deque), and
the handshake's parsed request and response (websockets ``Request``/``Response`` with their
headers), which uvicorn keeps referenced for the socket's whole life although nothing reads them
after the handshake. This subclass changes only those:

- ``queue``: ``LeanQueue``, the same ``put_nowait``/``get``/``empty``/``qsize`` with two lists made
  on first use (a socket that never sends a message holds neither);
- ``writable``: ``LeanEvent``, ``set``/``clear``/``is_set``/``wait`` with its waiters' list made on
  first wait;
- ``request``/``response`` are dropped once the accept was written.

It reads nothing else of uvicorn's, and the releases it was checked with are the pre-framed
writer's (``realtime/wire.py``, ``VERIFIED_RELEASES``): the same start-up check covers both. With any
other uvicorn the process uses the plain protocol (``protocol_class()``), so an upgrade costs
memory, never correctness.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from realtime.releases import releases_problem

# Only on the releases it was checked with; otherwise the protocol is uvicorn's own, unchanged.
LEAN = releases_problem() is None


class LeanQueue:
    """What uvicorn's protocol uses of ``asyncio.Queue`` (unbounded), with no deque per socket."""

    __slots__ = ("_items", "_waiters")

    def __init__(self) -> None:
        self._items: list[Any] | None = None
        self._waiters: list[asyncio.Future[None]] | None = None

    def qsize(self) -> int:
        return len(self._items) if self._items else 0

    def empty(self) -> bool:
        return not self._items

    def put_nowait(self, item: Any) -> None:
        if self._items is None:
            self._items = []
        self._items.append(item)
        self._wake_one()

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.pop(0)
            if not waiter.done():
                waiter.set_result(None)
                return

    async def get(self) -> Any:
        while not self._items:
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            if self._waiters is None:
                self._waiters = []
            self._waiters.append(waiter)
            try:
                await waiter
            except BaseException:
                if self._waiters and waiter in self._waiters:
                    self._waiters.remove(waiter)
                if not waiter.cancelled() and self._items:
                    self._wake_one()  # woken, then cancelled: the item goes to the next getter
                raise
        item = self._items.pop(0)
        if not self._items:
            self._items = None
        return item


class LeanEvent:
    """What uvicorn's protocol uses of ``asyncio.Event``, with the waiters' list made on first wait."""

    __slots__ = ("_value", "_waiters")

    def __init__(self) -> None:
        self._value = False
        self._waiters: list[asyncio.Future[bool]] | None = None

    def is_set(self) -> bool:
        return self._value

    def set(self) -> None:
        if self._value:
            return
        self._value = True
        waiters, self._waiters = self._waiters, None
        for waiter in waiters or ():
            if not waiter.done():
                waiter.set_result(True)

    def clear(self) -> None:
        self._value = False

    async def wait(self) -> bool:
        if self._value:
            return True
        waiter: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        if self._waiters is None:
            self._waiters = []
        self._waiters.append(waiter)
        try:
            await waiter
        finally:
            if self._waiters and waiter in self._waiters:
                self._waiters.remove(waiter)
        return True


class LeanWebSocketProtocol(WebSocketsSansIOProtocol):
    """``WebSocketsSansIOProtocol`` holding less per socket (see the module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not LEAN:
            return
        self.queue = LeanQueue()  # type: ignore[assignment]
        writable = LeanEvent()
        writable.set()
        self.writable = writable  # type: ignore[assignment]

    async def send(self, message: Any) -> None:
        await super().send(message)
        if LEAN and self.handshake_complete and getattr(self, "response", None) is not None:
            # The accept (or a refusal) is written: nothing reads the handshake's request or response again.
            self.request = None  # type: ignore[assignment]
            self.response = None  # type: ignore[assignment]
