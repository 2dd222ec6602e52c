"""Long commands: a tqdm bar on a terminal, plain lines (no carriage returns) in logs and pipes."""

from __future__ import annotations

import io
from typing import Any

import pytest

from scoreboard.progress import ENV_MODE, progress, say, track

pytestmark = pytest.mark.embedded


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def _no_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_MODE, raising=False)


def test_a_terminal_gets_a_bar() -> None:
    out = Terminal()
    with progress(total=200, desc="rebuild global", unit="players", stream=out) as bar:
        for _ in range(200):
            bar.update()
    text = out.getvalue()
    assert "\r" in text  # redrawn in place
    assert "rebuild global" in text and "100%" in text and "200/200" in text


def test_a_log_gets_plain_lines_and_a_summary(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = iter(float(t) for t in range(100))
    monkeypatch.setattr("scoreboard.progress.time.monotonic", lambda: next(clock))
    out = io.StringIO()  # not a terminal: a pipe, a log file, CI
    with progress(total=4, desc="seed", unit="players", stream=out, every_seconds=2) as bar:
        for _ in range(4):
            bar.update()
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue()
    assert lines[:2] == ["seed: 2/4 players (50%)", "seed: 4/4 players (100%)"]
    assert lines[-1].startswith("seed: done, 4 players in ")


def test_unknown_totals_and_the_override(monkeypatch: pytest.MonkeyPatch) -> None:
    out = Terminal()
    monkeypatch.setenv(ENV_MODE, "plain")
    assert list(track(iter(range(3)), total=None, desc="export", unit="rows", stream=out)) == [0, 1, 2]
    assert out.getvalue().splitlines()[-1].startswith("export: done, 3 rows in ")
    monkeypatch.setenv(ENV_MODE, "off")
    quiet = io.StringIO()
    with progress(total=3, desc="x", stream=quiet) as bar:
        bar.update(3)
    assert quiet.getvalue() == ""


def test_say_prints_whole_lines(capsys: Any) -> None:
    out = Terminal()
    with progress(total=2, desc="ladder", unit="steps", stream=out) as bar:
        say("[bench] step 1 done", stream=out)
        bar.update(2)
    assert "[bench] step 1 done\n" in out.getvalue()
