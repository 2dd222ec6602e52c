"""bench.fraud_cost runs the fraud engine on players with a keen human's history, end to end: it
stops if the engine blocks such a player or the pre-filter calls it a repeat (its figures would then
measure the wrong path)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

from tests.realtime.servers import session_database_url

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.django_db(transaction=True)  # the tool's own process writes the players
def test_the_fraud_cost_benchmark_measures_an_allowed_update() -> None:
    env = {**os.environ, "DATABASE_URL": session_database_url(), "REDIS_URL": settings.REDIS_URL}
    result = subprocess.run(
        [sys.executable, "-m", "bench.fraud_cost", "--players", "60", "--rounds", "2"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "the fraud engine's own cost (engine - floor, per round)" in result.stdout
