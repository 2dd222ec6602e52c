"""bench/run.py's update ladder: the extra rungs between the last passing and the first failing rate."""

from __future__ import annotations

from typing import Any

import pytest

from bench.run import refinement

pytestmark = pytest.mark.embedded


def _steps(*rates: tuple[int, bool]) -> list[dict[str, Any]]:
    return [{"rate": rate, "ok": ok} for rate, ok in rates]


def _passes(step: dict[str, Any]) -> bool:
    return bool(step["ok"])


def test_halfway_between_the_last_pass_and_the_first_failure() -> None:
    assert refinement(_steps((300, True), (350, True), (400, True), (500, False)), _passes) == 450
    assert refinement(_steps((300, True), (500, False), (400, False)), _passes) == 350
    assert refinement(_steps((300, True), (500, False), (400, True)), _passes) == 450


def test_nothing_to_refine() -> None:
    assert refinement(_steps((50, False)), _passes) is None  # no passing rung
    assert refinement(_steps((50, True), (100, True)), _passes) is None  # the ladder never failed
    assert refinement(_steps((300, True), (310, False)), _passes) is None  # already 10/s apart
    assert refinement(_steps((300, True), (320, False), (310, True)), _passes) is None


def test_a_failure_below_a_pass_is_noise_not_a_bracket() -> None:
    assert refinement(_steps((200, False), (300, True)), _passes) is None
