"""The simulation's shared clock (tests/fraud/simclock.py) and the guard of its server."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fraud import simclock

ROOT = Path(__file__).resolve().parents[2]


def test_a_time_set_by_the_driver_is_what_another_process_reads(tmp_path: Path) -> None:
    driver = simclock.SharedClock(tmp_path / "clock", start=1_000.25)
    driver.advance(59.5)
    reader = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from tests.fraud import simclock; print(simclock.SharedClock(sys.argv[1]).time())",
            str(tmp_path / "clock"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert float(reader.stdout) == 1_059.75
    other = simclock.SharedClock(tmp_path / "clock")
    driver.now = 7_200.0
    assert (other.time(), other.monotonic()) == (7_200.0, 7_200.0)


def test_install_points_every_hook_at_the_clock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from django.utils import timezone

    from fraud import services as fraud_services
    from scoreboard import ratelimit
    from scores import action_tokens

    clock = simclock.SharedClock(tmp_path / "clock", start=1_800_000_000.0)
    simclock.install(clock, monkeypatch.setattr)
    assert fraud_services._now() == ratelimit._now() == action_tokens.time.time() == 1_800_000_000.0
    assert timezone.now().timestamp() == 1_800_000_000.0
    clock.advance(30)
    assert fraud_services._now() == 1_800_000_030.0


def test_the_server_refuses_to_load_without_the_clock() -> None:
    env = {k: v for k, v in os.environ.items() if k != simclock.CLOCK_FILE_ENV}
    result = subprocess.run(
        [sys.executable, "-c", "import tests.fraud.simserver"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode != 0
    assert f"{simclock.CLOCK_FILE_ENV} is not set" in result.stderr
