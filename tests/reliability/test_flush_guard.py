"""`make test` empties its Redis database before every test: it refuses a database that holds
data and is not marked as a test database, instead of wiping it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from tests.conftest import TEST_DATABASE_MARKER
from tests.reliability.throwaway import throwaway_redis

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.redis


def run_suite_on(redis_url: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "REDIS_URL": redis_url, "DATABASE_URL": ""}
    return subprocess.run(
        [
            *(sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", "-p", "no:cacheprovider"),
            "tests/ops/test_health.py::test_healthz_answers_without_touching_the_stores",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_suite_refuses_to_flush_a_database_with_data_and_marks_an_empty_one() -> None:
    with throwaway_redis() as server:
        kept = redis.Redis.from_url(server.url)
        kept.set("somebody:data", "keep me")
        refused = run_suite_on(server.url)
        assert refused.returncode == 3, refused.stdout + refused.stderr
        assert "refuses to FLUSHDB" in refused.stdout + refused.stderr
        assert kept.get("somebody:data") == b"keep me"

        kept.delete("somebody:data")
        accepted = run_suite_on(server.url)  # empty: it becomes the suite's test database
        assert accepted.returncode == 0, accepted.stdout + accepted.stderr
        assert kept.exists(TEST_DATABASE_MARKER)
        kept.set("left:by:a:test", "1")
        again = run_suite_on(server.url)  # marked: leftovers of earlier runs are flushed
        assert again.returncode == 0, again.stdout + again.stderr
        assert not kept.exists("left:by:a:test")
