"""Fixtures for the anti-cheat tests: a controllable clock and switches for each defence."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import override_settings

from fraud import population
from scoreboard import ratelimit
from tests.fraud import simclock

NO_FRAUD_BLOCKING = {"FRAUD_FLAG_THRESHOLD": 2.0, "FRAUD_BLOCK_THRESHOLD": 2.0}
NO_RATE_LIMITS = {"RATE_LIMIT_ENABLED": False}


@pytest.fixture(autouse=True)
def _breaker_closed() -> Iterator[None]:
    """A test that takes the counter store down must not leave the next test failing closed."""
    ratelimit.breaker.reset()
    yield
    ratelimit.breaker.reset()


@pytest.fixture(autouse=True)
def _population_forgotten() -> Iterator[None]:
    """Each process keeps the population sketch for a minute: no test may see another's."""
    population.forget()
    yield
    population.forget()


@pytest.fixture
def no_fraud_blocking() -> Iterator[None]:
    with override_settings(**NO_FRAUD_BLOCKING):
        yield


@pytest.fixture
def no_rate_limits() -> Iterator[None]:
    with override_settings(**NO_RATE_LIMITS):
        yield


class FakeClock:
    """Wall-clock seconds that only move when told; stands in for ``time`` where it is patched."""

    def __init__(self, start: float) -> None:
        self.now = start

    def time(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    """One simulated clock for the token window, the rate-limit windows, the fraud windows and the
    rows' timestamps (``django.utils.timezone.now``, which the embedded fallback reads windows from).

    JWT expiry and Redis TTLs keep real time; everything that decides *when* an action happened
    or how fast a player goes follows this clock.
    """
    fake = FakeClock(time.time())
    simclock.install(fake, monkeypatch.setattr, hooks=simclock.HOOKS)
    return fake


def error_of(response: Any) -> dict[str, Any]:
    body = response.json()
    assert body["success"] is False, body
    return dict(body["error"])
