"""The adversarial simulation in its quick mode, asserted on a fixed seed (tests/fraud/adversarial.py).

``make fraud-sim`` runs the full mode (FRAUD_SIM=full) and prints the same table.
"""

from __future__ import annotations

import os

import pytest

from tests.fraud import adversarial

pytestmark = [pytest.mark.django_db, pytest.mark.postgres, pytest.mark.redis]

SIM_SEED = 20261202


def test_adversarial_simulation_quick(make_player, mint, clock, capsys):
    """No human blocked, at most 1% of humans quarantined, every bot stopped by its 5th valid
    submission, bots' share of points within 1.5x the floor.

    Issue #14's targets are recall@3 >= 95% and a share within 1.2x the floor: NOT met yet. On this
    seed recall@3 is 74% and the share 1.37x the floor — the jittered bots (900-1000 every 5-9 s)
    are stopped at their 5th, the slow farmers and adaptive bots at their 3rd-4th, because the
    population the sketch learns scores the maximum in ~5% of its levels and quarantining at three
    maxima in a row would quarantine ~4% of these humans (measured). The assertions hold the line
    we reached so that a change can only move it forward; fraud/README.md has the table.
    """
    mode = adversarial.FULL if os.environ.get("FRAUD_SIM") == "full" else adversarial.QUICK
    seed = int(os.environ.get("FRAUD_SIM_SEED", SIM_SEED))
    report = adversarial.run(mode=mode, seed=seed, clock=clock, make_player=make_player, mint=mint)
    with capsys.disabled():
        minutes = report.simulated_seconds / 60
        print(f"\nadversarial simulation, {mode.name} mode, seed {seed}, {minutes:.0f} simulated min:")
        print(report.table())

    assert report.humans_blocked == 0
    assert report.humans_quarantined <= 0.01 * len(report.humans)
    assert report.recall(5) == 1.0
    assert report.recall(3) >= 0.7
    assert report.bot_share <= 1.5 * report.floor_share
    # Every fresh account of the burst from one address is caught at its 1st or 2nd submission.
    assert all(b.caught_at is not None and b.caught_at <= 2 for b in report.population("fresh-account burst"))
