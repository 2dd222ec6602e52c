"""bench.run.update_timeline: the score updates' time behind nginx, per second of a delivery window."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.run import update_timeline

pytestmark = pytest.mark.embedded

WINDOW_START = 1_796_000_000.0  # 2026-11-30T00:53:20Z


def line(at: float, path: str, upstream: str) -> str:
    from datetime import UTC, datetime

    ts = datetime.fromtimestamp(at, UTC).isoformat(timespec="seconds")
    return json.dumps({"ts": ts, "path": path, "status": 200, "upstream_time": upstream}) + "\n"


def test_per_second_of_the_window_only_score_updates_from_the_offset(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    before = line(WINDOW_START + 1, "/v1/scores/update", "9.999")  # written before the step's offset
    log.write_text(before)
    offset = log.stat().st_size
    with log.open("a") as out:
        out.write(line(WINDOW_START - 1, "/v1/scores/update", "0.500"))  # before the window
        out.write(line(WINDOW_START, "/v1/scores/update", "0.300"))
        out.write(line(WINDOW_START + 0.5, "/v1/scores/update", "0.100"))
        out.write(line(WINDOW_START + 0.7, "/v1/leaderboard", "0.900"))  # not an update
        out.write("not json\n")
        out.write(line(WINDOW_START + 2, "/v1/scores/update", "0.004, 0.005"))  # two upstreams tried
        out.write(line(WINDOW_START + 2, "/v1/scores/update", "0.006"))
        out.write(line(WINDOW_START + 10, "/v1/scores/update", "0.001"))  # after the window
    rows = update_timeline(log, offset, WINDOW_START, WINDOW_START + 10)
    assert rows == [
        {"second": 0, "answered": 2, "p50": 100.0, "p95": 300.0, "p99": 300.0, "max": 300.0},
        {"second": 2, "answered": 1, "p50": 6.0, "p95": 6.0, "p99": 6.0, "max": 6.0},
    ]


def test_no_access_log_no_timeline(tmp_path: Path) -> None:
    assert update_timeline(tmp_path / "missing.log", 0, WINDOW_START, WINDOW_START + 10) is None
