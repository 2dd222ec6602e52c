"""A refresh token rotates once, even when it is presented by several requests at the same moment."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.db import connections

from accounts import services
from scoreboard.errors import Unauthorized

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

ATTEMPTS = 10


def test_concurrent_refreshes_of_one_token_rotate_it_once(player):
    refresh_token = services.player_tokens_issue(user=player).refresh
    barrier = threading.Barrier(ATTEMPTS)
    results: list[Any] = [None] * ATTEMPTS

    def attempt(i: int) -> None:
        try:
            barrier.wait()
            results[i] = services.player_tokens_refresh(refresh_token=refresh_token)
        except Exception as exc:  # collected and asserted on below
            results[i] = exc
        finally:
            connections.close_all()

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(ATTEMPTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    rotated = [r for r in results if isinstance(r, services.TokenPair)]
    refused = [r for r in results if isinstance(r, Unauthorized)]
    assert len(rotated) == 1, results
    assert len(refused) == ATTEMPTS - 1
