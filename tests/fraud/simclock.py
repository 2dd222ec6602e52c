"""One simulated clock for the adversarial simulation's driver and the real server it plays against.

The simulation compresses an hour of play into a minute, so every clock that decides *when* an action
happened or how fast a player goes must follow the simulation, in the driver (which mints the action
tokens and runs the batch job) and in the server processes (which judge the submissions) alike. The
time is a float64 of simulated seconds in an 8-byte file, mapped into every process: the driver
writes it, the servers read it on every call. JWT expiry and Redis TTLs keep real time, as in the
in-process simulation (``tests.fraud.conftest.clock``).

Only the simulation's server (``tests.fraud.simserver``) and tests install it; nothing in the
service's own packages knows it exists.
"""

from __future__ import annotations

import datetime as dt
import mmap
import os
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

_DOUBLE = struct.Struct("<d")
# The server processes' environment variable naming the clock's file (tests.fraud.simserver).
CLOCK_FILE_ENV = "FRAUD_SIM_CLOCK_FILE"

Hook = tuple[str, str, Callable[[Any], Any]]  # (module, attribute, what replaces it given the clock)
# The clocks that decide when an action happened or how fast a player goes: the in-process
# simulation's and the fraud tests' clock (tests.fraud.conftest.clock) moves these.
HOOKS: tuple[Hook, ...] = (
    ("scores.action_tokens", "time", lambda c: c),
    ("django_ratelimit.core", "time", lambda c: c),
    ("scoreboard.ratelimit", "_now", lambda c: c.time),
    ("fraud.services", "_now", lambda c: c.time),
    ("django.utils.timezone", "now", lambda c: lambda: dt.datetime.fromtimestamp(c.now, tz=dt.UTC)),
)
# A server's processes also keep the population sketch's copy MEMO_SECONDS of (simulated) time; in
# one process the batch job drops that copy itself after each refresh.
SERVER_HOOKS: tuple[Hook, ...] = (*HOOKS, ("fraud.population", "time", lambda c: c))


class SharedClock:
    """Simulated wall-clock seconds shared through a file; ``now`` moves only when a driver sets it.

    Stands in for the ``time`` module where it is patched (``time()``, and ``monotonic()`` for the
    population sketch's copy), like ``tests.fraud.conftest.FakeClock``.
    """

    def __init__(self, path: Path | str, *, start: float | None = None) -> None:
        path = Path(path)
        if start is not None:
            path.write_bytes(_DOUBLE.pack(start))
        fd = os.open(path, os.O_RDWR)
        try:
            self._map = mmap.mmap(fd, _DOUBLE.size)
        finally:
            os.close(fd)

    @property
    def now(self) -> float:
        return float(_DOUBLE.unpack_from(self._map, 0)[0])

    @now.setter
    def now(self, seconds: float) -> None:
        _DOUBLE.pack_into(self._map, 0, seconds)

    def time(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def install(
    clock: Any, setattr_: Callable[[Any, str, Any], Any] = setattr, hooks: tuple[Hook, ...] = SERVER_HOOKS
) -> None:
    """Point ``hooks`` at ``clock`` (``setattr_``: ``monkeypatch.setattr`` in a test, to undo it)."""
    import importlib

    for module, attribute, replacement in hooks:
        setattr_(importlib.import_module(module), attribute, replacement(clock))
