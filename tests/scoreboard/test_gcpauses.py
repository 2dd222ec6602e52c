"""scoreboard/gcpauses.py: every garbage collection of the process is timed, by generation."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
from pathlib import Path

from prometheus_client import REGISTRY

from scoreboard import gcpauses

ROOT = Path(__file__).resolve().parents[2]


def _count(generation: int) -> float:
    return REGISTRY.get_sample_value("scoreboard_gc_pause_seconds_count", {"generation": str(generation)}) or 0.0


def test_each_collection_is_counted_under_its_generation() -> None:
    gcpauses.install()
    gcpauses.install()  # once per process: a second call adds no second hook
    assert sum(1 for cb in gc.callbacks if cb in gcpauses._installed) == 1
    gc.disable()  # only the collections asked for below
    try:
        before = [_count(g) for g in range(3)]
        gc.collect(1)
        gc.collect(2)
        gc.collect(2)
        after = [_count(g) for g in range(3)]
    finally:
        gc.enable()
    assert after[2] - before[2] == 2
    assert after[1] - before[1] == 1


def test_with_gc_pause_log_each_collection_over_a_millisecond_is_written(tmp_path: Path) -> None:
    # A fresh interpreter (the hook reads GC_PAUSE_LOG once); a full collection over a million
    # containers takes well over 1 ms on any machine.
    probe = (
        "import gc; from scoreboard import gcpauses; gcpauses.install();"
        "keep = [[i] for i in range(1_000_000)]; gc.collect(); gc.collect(0)"
    )
    env = {**os.environ, "GC_PAUSE_LOG": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr
    [log] = tmp_path.glob("gc-*.log")
    lines = [line.split() for line in log.read_text().splitlines()]
    full = [parts for parts in lines if parts[1] == "2"]
    assert full, lines
    at, _generation, ms, collected = full[-1]
    assert float(ms) >= 1.0 and int(collected) >= 0 and float(at) > 1.7e9
