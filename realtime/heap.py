"""Keeps the live sockets' objects out of the garbage collector's full passes.

A full (generation 2) collection stops the whole process for a pass over every tracked object it
holds, and every socket's frames wait for it. The start-up heap is frozen once (scoreboard/asgi.py);
each idle socket adds about 95 more tracked objects (uvicorn's protocol, websockets' parser, the
consumer, the middlewares' coroutines; ``bench/`` measured 191,000 for 2,000 sockets). While
thousands of sockets connect (a deploy, a Redis failover, a network blip: every browser reconnects
at once), CPython's rule for full passes (the objects promoted since the last one exceed a quarter
of the old generation) fires again and again over an old generation that keeps growing: 14 full
collections of up to 573 ms in the four processes while 10,000 sockets connected
(docs/benchmarks.md).

So every ``REALTIME_GC_FREEZE_CONNECTS`` connections a process collects what is not frozen yet (the
sockets since the last freeze: a short pass) and freezes the survivors (``gc.freeze()``): no full
pass ever covers more than that many sockets again.

What it costs: frozen objects are never examined for cycles, and a closed socket leaves about 23
objects in reference cycles (uvicorn's protocol and its transport, websockets' parser generator),
which stay until the next full pass that sees them. So once as many frozen sockets have closed as
the process holds open (and at least ``THAW_MIN_CLOSES``), the process thaws (``gc.unfreeze()``),
runs one full collection over everything and freezes again: one long pause per that many closes,
counted in ``scoreboard_realtime_gc_thaws``, instead of a dozen during every connect storm, and
the garbage of closed sockets never exceeds that of the open ones.

Only touched from the event loop thread.
"""

from __future__ import annotations

import gc
import logging
import time

from prometheus_client import Counter

logger = logging.getLogger(__name__)

# At least this many closed sockets before a thaw (a process with few sockets thaws rarely).
THAW_MIN_CLOSES = 1000

GC_FREEZES = Counter(
    "scoreboard_realtime_gc_freezes", "Times this process froze its sockets' objects out of full collections."
)
GC_THAWS = Counter(
    "scoreboard_realtime_gc_thaws",
    "Times this process unfroze its heap for one full collection (the garbage of closed sockets).",
)


class SocketHeap:
    """Counts opened and closed sockets; freezes and thaws the heap as the module docstring says.

    ``opened()`` returns the socket's token, which its ``closed()`` gives back: whether that
    socket's objects were frozen since (a freeze or a thaw after it opened) or are still in sight.
    """

    def __init__(self, freeze_every: int, thaw_min_closes: int = THAW_MIN_CLOSES) -> None:
        self.freeze_every = freeze_every
        self.thaw_min_closes = thaw_min_closes
        self.epoch = 0  # freezes and thaws so far
        self.open = 0
        self.unfrozen = 0  # open sockets opened since the last freeze
        self.closed_frozen = 0  # frozen sockets closed since the last thaw: their cycles wait for it

    def opened(self) -> int:
        token = self.epoch  # a freeze from here on (this call's own included) freezes this socket
        self.open += 1
        if self.freeze_every > 0:
            self.unfrozen += 1
            if self.unfrozen >= self.freeze_every:
                self._freeze()
        return token

    def closed(self, token: int) -> None:
        self.open = max(0, self.open - 1)
        if self.freeze_every <= 0:
            return
        if token == self.epoch:  # not frozen yet: the collector still sees its objects
            self.unfrozen = max(0, self.unfrozen - 1)
            return
        self.closed_frozen += 1
        if self.closed_frozen >= max(self.thaw_min_closes, self.open):
            self._thaw()

    def _freeze(self) -> None:
        # A pass over what is not frozen yet (the sockets since the last freeze): short; then out of sight.
        gc.collect()
        gc.freeze()
        self.epoch += 1
        self.unfrozen = 0
        GC_FREEZES.inc()

    def _thaw(self) -> None:
        started = time.perf_counter()
        gc.unfreeze()
        collected = gc.collect()
        gc.freeze()
        self.epoch += 1
        self.unfrozen = 0
        self.closed_frozen = 0
        GC_THAWS.inc()
        logger.info(
            "realtime: full collection for the garbage of closed sockets: %d objects, %.0f ms",
            collected,
            (time.perf_counter() - started) * 1000,
        )


_heap: SocketHeap | None = None


def socket_heap() -> SocketHeap:
    """The process's policy (``REALTIME_GC_FREEZE_CONNECTS``; 0 turns it off)."""
    global _heap
    if _heap is None:
        from django.conf import settings

        _heap = SocketHeap(settings.REALTIME_GC_FREEZE_CONNECTS)
    return _heap
