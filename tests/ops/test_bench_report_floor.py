"""bench/report.py: the sustained rate beside the served lean floor's, from the same run."""

from __future__ import annotations

from typing import Any

import pytest

from bench.report import rows

pytestmark = pytest.mark.embedded


def _step(rate: int, achieved: float, box: float) -> dict[str, Any]:
    return {"rate": rate, "update": {"achieved_per_s": achieved}, "cpu_ms_per_request": {"box": box}}


def test_the_floor_row_compares_the_sustained_rates_of_one_run() -> None:
    result: dict[str, Any] = {
        "sustained": {"rate": 200, "achieved_per_s": 199.0},
        "update_steps": [_step(200, 199.0, 6.5)],
        "sustained_floor": {"rate": 600, "achieved_per_s": 597.0},
        "update_steps_floor": [_step(500, 498.0, 2.9), _step(600, 597.0, 2.7)],
    }
    (row,) = [r for r in rows(result) if "lean floor served" in r[0]]
    assert row[1] == "199"
    assert row[2] == "served lean floor: 597/s (whole box 2.7 ms per request)"
    assert row[3] == "0.33x"


def test_no_floor_row_without_its_ladder() -> None:
    assert not [r for r in rows({"sustained": {"achieved_per_s": 199.0}}) if "lean floor served" in r[0]]
