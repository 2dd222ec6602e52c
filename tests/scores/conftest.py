"""Fixtures for the score tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.test import override_settings

# Rate limits and fraud blocking would (rightly) stop the bursts these tests need: one player
# submitting hundreds of actions in a second. A block threshold above 1 turns blocking off.
UNTHROTTLED = {
    "RATE_LIMIT_ENABLED": False,
    "RATE_LIMIT_USER_PER_MINUTE": 1_000_000,
    "RATE_LIMIT_IP_PER_MINUTE": 1_000_000,
    "RATE_LIMIT_GLOBAL_PER_MINUTE": 1_000_000,
    "FRAUD_FLAG_THRESHOLD": 2.0,
    "FRAUD_BLOCK_THRESHOLD": 2.0,
}


@pytest.fixture
def unthrottled() -> Iterator[None]:
    with override_settings(**UNTHROTTLED):
        yield
