"""Concurrency against real PostgreSQL and Redis: no lost update, no double spend of a token."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connections

from accounts.models import User
from scoreboard.errors import Conflict
from scores import services
from scores.models import ScoreHistory, UsedNonce
from scores.ranking import redis_index

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.django_db(transaction=True)]

THREADS = 50
SUBMISSIONS_PER_THREAD = 20
SAME_TOKEN_ATTEMPTS = 20


def _run_in_threads(count: int, work: Callable[[int], Any]) -> list[Any]:
    """Start ``count`` threads together; each returns its result or the exception it raised."""
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count

    def run(i: int) -> None:
        try:
            barrier.wait()
            results[i] = work(i)
        except BaseException as exc:  # collected and asserted on by the test
            results[i] = exc
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_50_threads_x_20_increments_lose_no_update(player, mint, unthrottled):
    # Distinct increments per submission, so a lost or doubled update changes the sum.
    increments = [
        [1 + (t * SUBMISSIONS_PER_THREAD + i) % 97 for i in range(SUBMISSIONS_PER_THREAD)] for t in range(THREADS)
    ]
    tokens = [[mint(player, increment=inc) for inc in row] for row in increments]

    def work(t: int) -> list[int]:
        user = User.objects.get(pk=player.pk)
        scores = []
        for token in tokens[t]:
            scores.append(services.score_submit(user=user, action_token=token).new_score)
            # As a request does at its end: the connection goes back to the per-process pool
            # (DB_POOL_MAX_SIZE), so 50 threads share it instead of each holding one throughout.
            connections["default"].close()
        return scores

    results = _run_in_threads(THREADS, work)

    errors = [r for r in results if isinstance(r, BaseException)]
    assert errors == []
    expected = sum(map(sum, increments))
    player.refresh_from_db()
    assert player.current_score == expected
    assert player.score_version == THREADS * SUBMISSIONS_PER_THREAD
    assert ScoreHistory.objects.filter(user=player).count() == THREADS * SUBMISSIONS_PER_THREAD
    assert UsedNonce.objects.filter(user=player).count() == THREADS * SUBMISSIONS_PER_THREAD
    # Every new_score returned is distinct: each update saw the one before it (no lost update),
    # and the history chains old_score -> new_score without gaps.
    new_scores = sorted(score for r in results for score in r)
    assert len(set(new_scores)) == len(new_scores) and new_scores[-1] == expected
    chain = list(ScoreHistory.objects.filter(user=player).order_by("new_score").values_list("old_score", "new_score"))
    assert chain[0][0] == 0
    assert all(prev[1] == nxt[0] for prev, nxt in itertools.pairwise(chain))
    # The Redis index holds the final absolute score, whatever order the writes arrived in.
    index = redis_index()
    assert index is not None
    assert index.rank_of(str(player.pk)) == (1, expected)


def test_same_token_20_times_concurrently_applies_once(player, mint, unthrottled):
    token = mint(player, increment=77)

    def work(_: int) -> int:
        user = User.objects.get(pk=player.pk)
        return services.score_submit(user=user, action_token=token).new_score

    results = _run_in_threads(SAME_TOKEN_ATTEMPTS, work)

    successes = [r for r in results if isinstance(r, int)]
    conflicts = [r for r in results if isinstance(r, Conflict)]
    assert successes == [77]
    assert len(conflicts) == SAME_TOKEN_ATTEMPTS - 1
    assert all(c.status_code == 409 and c.code == "action_token_replayed" for c in conflicts)
    # Each refusal carries the original result, so a client retry learns what happened.
    assert all(c.details is not None and c.details["new_score"] == 77 for c in conflicts)
    player.refresh_from_db()
    assert player.current_score == 77
    assert ScoreHistory.objects.filter(user=player).count() == 1
