"""The benchmark keeps Celery beat's heavy maintenance jobs out of its measurement windows (they cost
0.4-0.75 of a core for seconds at a time and had landed in random delivery steps)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.run import MAINTENANCE_INTERVALS, MODES, Bench

SETTINGS = (Path(__file__).resolve().parents[2] / "scoreboard" / "settings.py").read_text()


def test_every_maintenance_interval_is_one_the_beat_schedule_reads() -> None:
    for name in MAINTENANCE_INTERVALS:
        assert f'env.int("{name}"' in SETTINGS, name
    # Every job of the schedule but the cheap board-period keeper has its interval put off.
    schedule_reads = SETTINGS.split("CELERY_BEAT_SCHEDULE", 1)[1].split("\n}\n", 1)[0]
    intervals = {
        line.split('env.int("', 1)[1].split('"', 1)[0] for line in schedule_reads.splitlines() if "env.int(" in line
    }
    assert intervals - set(MAINTENANCE_INTERVALS) == {"BOARD_PERIODS_EVERY_SECONDS"}


@pytest.mark.parametrize("mode", ["short", "full"])
def test_the_bench_servers_run_no_maintenance_job_within_a_day(mode: str, tmp_path: Path) -> None:
    env = Bench(MODES[mode], players=1000, work=tmp_path).environment()
    for name in MAINTENANCE_INTERVALS:
        assert int(env[name]) >= 24 * 3600
