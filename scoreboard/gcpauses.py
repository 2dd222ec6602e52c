"""How long this process's garbage collections stop it: a histogram by generation.

Every collection stops the whole process (its event loop, every socket's frames) for its duration.
In an ASGI process holding thousands of sockets a full (generation 2) pass over them took
157-377 ms during a delivery step (docs/benchmarks.md): ``scoreboard_gc_pause_seconds`` makes
those visible to an operator, and ``GC_PAUSE_LOG`` (a directory, benchmarks only) writes every
collection of 1 ms or more to ``gc-<pid>.log`` in it, one line each:
``<epoch seconds> <generation> <ms> <objects collected>``.
"""

from __future__ import annotations

import gc
import os
import time
from typing import Any

from prometheus_client import Histogram

GC_PAUSE = Histogram(
    "scoreboard_gc_pause_seconds",
    "Garbage collections of this process by generation (the process is stopped while one runs).",
    ["generation"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
)
LOG_ENV = "GC_PAUSE_LOG"
LOG_MIN_SECONDS = 0.001

_installed: list[Any] = []


def install() -> None:
    """Time every collection of this process from now on (once per process; later calls do nothing)."""
    if _installed:
        return
    observers = [GC_PAUSE.labels(generation=str(g)) for g in range(3)]
    log_dir = os.environ.get(LOG_ENV)
    fd = (
        os.open(os.path.join(log_dir, f"gc-{os.getpid()}.log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        if log_dir
        else None
    )
    clock = time.perf_counter
    started = [0.0]

    def on_collection(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started[0] = clock()
            return
        took = clock() - started[0]
        generation = info["generation"]
        observers[generation].observe(took)
        if fd is not None and took >= LOG_MIN_SECONDS:
            os.write(fd, b"%.6f %d %.3f %d\n" % (time.time() - took, generation, took * 1000, info["collected"]))

    gc.callbacks.append(on_collection)
    _installed.append(on_collection)
