"""The delivery steps' contender updates: every one changes the global top 10, at the bare server's
rate, within the allowed increments and the per-player limit (bench.run.Bench.top_changes_file)."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pytest

from bench.run import MAX_INCREMENT, MODES, TOP_CHANGE_MARGIN, TOP_CHANGES_RATE, WS_BASELINE_RATE, Bench


@pytest.fixture
def bench(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Bench, list[tuple[str, int]]]:
    sent: list[tuple[str, int]] = []

    def request(self: Bench, user_id: str, rng: random.Random, increment: int | None = None) -> bytes:
        assert increment is not None
        sent.append((user_id, increment))
        return b"POST"

    monkeypatch.setattr(Bench, "update_request", request)
    b = Bench(MODES["full"], players=1000, work=tmp_path)
    rng = random.Random(1)
    b.contender_scores = {f"c{i}": 50_000 + rng.randrange(300) for i in range(600)}
    return b, sent


def test_every_contender_update_changes_the_top_10(bench: tuple[Bench, list[tuple[str, int]]]) -> None:
    b, sent = bench
    b.top_changes_file("ws-top-test", 1100)  # ten 11-second windows' worth
    scores = dict(b.contender_scores)
    for user_id, increment in sent:
        top = sorted(scores.values(), reverse=True)[:10]
        assert 1 <= increment <= MAX_INCREMENT
        assert scores[user_id] <= top[-1]  # an entrant, from outside the top 10 (or tied with its last) ...
        scores[user_id] += increment
        assert top[-1] < scores[user_id] <= top[-1] + TOP_CHANGE_MARGIN  # ... just above the 10th place
    # Spread over the contenders: no player over the bench's per-player limit (30 a minute) in any
    # minute of updates at TOP_CHANGES_RATE.
    minute = int(60 * TOP_CHANGES_RATE)
    for start in range(0, len(sent) - minute + 1, 50):
        assert max(Counter(u for u, _ in sent[start : start + minute]).values()) <= 30
    assert b.contender_scores["c0"] == scores["c0"] - sum(i for u, i in sent if u == "c0")  # input untouched


def test_the_board_changes_as_often_as_the_bare_server_broadcasts() -> None:
    assert TOP_CHANGES_RATE == WS_BASELINE_RATE
