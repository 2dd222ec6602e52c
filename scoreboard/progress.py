"""Progress of long commands: a tqdm bar on a terminal, plain lines in logs and pipes.

    with progress(total=len(rows), desc="rebuild global", unit="players") as bar:
        for row in rows:
            ...
            bar.update()

A bar redraws itself with carriage returns, which is right for a person at a terminal and wrong
for a log file or CI output; there the same progress is a line every ``PLAIN_EVERY_SECONDS``
(and at the end) instead. ``SCOREBOARD_PROGRESS=bar|plain|off`` overrides the choice.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Protocol, TextIO, TypeVar

from tqdm import tqdm

PLAIN_EVERY_SECONDS = 5.0
ENV_MODE = "SCOREBOARD_PROGRESS"
T = TypeVar("T")


class Bar(Protocol):
    def update(self, n: int = 1) -> object: ...


class _PlainLines:
    """Progress as log lines: ``desc: 1200/100000 players (1%)``, at most one per interval."""

    def __init__(self, *, total: int | None, desc: str, unit: str, stream: TextIO, every_seconds: float) -> None:
        self.total, self.desc, self.unit, self.stream = total, desc, unit, stream
        self.every_seconds = every_seconds
        self.count = 0
        self.started = self.last = time.monotonic()

    def _line(self, text: str) -> None:
        self.stream.write(f"{self.desc}: {text}\n")
        self.stream.flush()

    def update(self, n: int = 1) -> None:
        self.count += n
        now = time.monotonic()
        if now - self.last >= self.every_seconds:
            self.last = now
            if self.total:
                self._line(f"{self.count}/{self.total} {self.unit} ({100 * self.count // self.total}%)")
            else:
                self._line(f"{self.count} {self.unit}")

    def close(self) -> None:
        self._line(f"done, {self.count} {self.unit} in {time.monotonic() - self.started:.1f}s")


class _Silent:
    def update(self, n: int = 1) -> None:
        pass


def _mode(stream: TextIO) -> str:
    chosen = os.environ.get(ENV_MODE, "").strip().lower()
    if chosen in ("bar", "plain", "off"):
        return chosen
    isatty = getattr(stream, "isatty", None)
    return "bar" if callable(isatty) and isatty() else "plain"


@contextmanager
def progress(
    *,
    total: int | None,
    desc: str,
    unit: str = "items",
    stream: TextIO | None = None,
    every_seconds: float = PLAIN_EVERY_SECONDS,
    enabled: bool = True,
) -> Iterator[Bar]:
    """A progress reporter for ``total`` units of work (None when unknown) on ``stream`` (stderr).

    ``enabled=False`` (a command run with ``--verbosity 0``) reports nothing.
    """
    out = stream if stream is not None else sys.stderr
    mode = _mode(out) if enabled else "off"
    if mode == "off":
        yield _Silent()
    elif mode == "bar":
        with tqdm(total=total, desc=desc, unit=f" {unit}", file=out, dynamic_ncols=True, leave=True) as bar:
            yield bar
    else:
        plain = _PlainLines(total=total, desc=desc, unit=unit, stream=out, every_seconds=every_seconds)
        try:
            yield plain
        finally:
            plain.close()


def say(message: str, *, stream: TextIO | None = None) -> None:
    """Print a line without tearing a progress bar that is being drawn on the same terminal."""
    tqdm.write(message, file=stream if stream is not None else sys.stderr)
    (stream if stream is not None else sys.stderr).flush()


def counted(items: Iterable[T], bar: Bar) -> Iterator[T]:
    """``items``, telling ``bar`` of each one as it is consumed (for a bar opened by the caller)."""
    for item in items:
        yield item
        bar.update()


def track(
    items: Iterable[T], *, total: int | None, desc: str, unit: str = "items", stream: TextIO | None = None
) -> Iterator[T]:
    """``items``, reporting progress as they are consumed."""
    with progress(total=total, desc=desc, unit=unit, stream=stream) as bar:
        for item in items:
            yield item
            bar.update()
