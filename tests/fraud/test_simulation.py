"""A scripted bot and simulated humans play through the real API on a simulated clock.

The bot completes a level every 7 s exactly (under the 10/min rate limit) and always claims the
maximal increment; a second bot jitters between 5 and 9 s and 900-1000 points; a human's
intervals are irregular (log-normal around 30 s) and increments vary.
Every submission goes through JWT, rate limits, token verification, the fraud engine and the
database; only the clock is simulated, so minutes of play take a second. Seeded: deterministic.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

import pytest
from django.conf import settings
from django.test import override_settings

from fraud.models import FraudLog
from tests.conftest import submit
from tests.fraud.conftest import FakeClock, error_of

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]

BOT_INTERVAL_SECONDS = 7.0
BOT_SUBMISSIONS = 30
# The embedded run (SQLite, windows read back from the database) checks the same with fewer humans.
HUMANS = 5 if settings.IS_POSTGRES else 2
HUMAN_SUBMISSIONS = 40
HUMAN_MEDIAN_INTERVAL_SECONDS = 30.0
HUMAN_INTERVAL_SIGMA = 0.6
HUMAN_MIN_INTERVAL_SECONDS = 4.0
FLAG_THRESHOLD = settings.FRAUD_FLAG_THRESHOLD


# Every attempt with any risk at all is logged, so the figures show each attempt's risk; the block
# threshold (what the test is about) keeps its default.
LOG_EVERYTHING = 0.01


@dataclass
class Session:
    statuses: list[int] = field(default_factory=list)
    risks: list[float] = field(default_factory=list)

    @property
    def blocked(self) -> int:
        return self.statuses.count(429)

    @property
    def applied(self) -> int:
        return self.statuses.count(200)

    @property
    def flagged(self) -> int:
        """Applied but at or above the default flag threshold: logged for review."""
        return sum(1 for s, r in zip(self.statuses, self.risks, strict=True) if s == 200 and r >= FLAG_THRESHOLD)

    @property
    def first_block(self) -> int | None:
        return self.statuses.index(429) + 1 if 429 in self.statuses else None

    def summary(self, name: str) -> str:
        return (
            f"{name}: {len(self.statuses)} submissions, {self.applied} applied ({self.flagged} of them flagged), "
            f"{self.blocked} blocked, first block at #{self.first_block}, "
            f"max risk {max(self.risks):.2f}, mean risk {sum(self.risks) / len(self.risks):.2f}"
        )


def play(*, player, client, mint, clock: FakeClock, intervals: list[float], increments: list[int]) -> Session:
    session = Session()
    logs = FraudLog.objects.filter(user=player)
    for interval, increment in zip(intervals, increments, strict=True):
        clock.advance(interval)
        logged_before = logs.count()
        response = submit(client, mint(player, increment=increment))
        assert response.status_code in (200, 429), response.content
        if response.status_code == 429:
            assert error_of(response)["code"] == "fraud_blocked"  # the engine, never the rate limit
        session.statuses.append(response.status_code)
        latest = logs.order_by("-created_at").first()
        session.risks.append(float(latest.risk_score) if latest is not None and logs.count() > logged_before else 0.0)
    return session


@override_settings(FRAUD_FLAG_THRESHOLD=LOG_EVERYTHING)
def test_a_scripted_bot_is_blocked_within_a_few_submissions_and_humans_never_are(
    make_player, client_for, mint, clock, capsys
):
    bot = make_player(username="scripted_bot")
    bot_session = play(
        player=bot,
        client=client_for(bot),
        mint=mint,
        clock=clock,
        intervals=[BOT_INTERVAL_SECONDS] * BOT_SUBMISSIONS,
        increments=[1000] * BOT_SUBMISSIONS,
    )
    lines = [bot_session.summary("bot")]
    clock.advance(3600)
    rng = random.Random(99)
    jittery = make_player(username="jittery_bot")
    jittery_session = play(
        player=jittery,
        client=client_for(jittery),
        mint=mint,
        clock=clock,
        intervals=[rng.uniform(5.0, 9.0) for _ in range(BOT_SUBMISSIONS)],
        increments=[rng.randint(900, 1000) for _ in range(BOT_SUBMISSIONS)],
    )
    lines.append(jittery_session.summary("bot with jitter"))
    clock.advance(3600)
    human_sessions = []
    for seed in range(HUMANS):
        rng = random.Random(seed)
        human = make_player(username=f"human_{seed}")
        intervals = [
            max(
                HUMAN_MIN_INTERVAL_SECONDS,
                rng.lognormvariate(math.log(HUMAN_MEDIAN_INTERVAL_SECONDS), HUMAN_INTERVAL_SIGMA),
            )
            for _ in range(HUMAN_SUBMISSIONS)
        ]
        increments = [rng.randint(20, 1000) for _ in range(HUMAN_SUBMISSIONS)]
        session = play(
            player=human, client=client_for(human), mint=mint, clock=clock, intervals=intervals, increments=increments
        )
        human_sessions.append(session)
        lines.append(session.summary(f"human {seed}"))
        clock.advance(3600)  # the next human plays later (and from the same test address)

    with capsys.disabled():
        print("\nbot vs human simulation:\n  " + "\n  ".join(lines))

    assert bot_session.first_block is not None and bot_session.first_block <= 6
    # Once caught the bot stays caught: every attempt after the first block is blocked too.
    assert bot_session.statuses[bot_session.first_block - 1 :] == [429] * (
        BOT_SUBMISSIONS - bot_session.first_block + 1
    )
    # A bot that jitters its rhythm by +-30% (as regular as a person can sample over 8 levels) is
    # not blocked, but its increments at the top, level after level, quarantine it.
    jittery.refresh_from_db()
    assert jittery_session.blocked > 0 or jittery.is_quarantined
    for session in human_sessions:
        assert session.blocked == 0
        assert session.applied == HUMAN_SUBMISSIONS
