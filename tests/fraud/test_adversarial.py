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
    """Issue #14's targets on this seed, for its bot classes: no human blocked, at most 1% of humans
    quarantined (the untuned casual, skilled and streaky players included), every class stopped by
    its 3rd valid submission (recall@3 100%, target 95%), bots' share of points within 1.2x the floor.

    The classes added to check generalisation are held to what they reach: the shy farmer (850-899,
    under the jump threshold) by its 12th, the mimic (a human's increments at twice a keen human's
    pace) by its 100th — it earns a keen human's points until its pace is beyond any human's
    sustained pace (fraud/README.md, "What an attacker can still do").
    """
    mode = adversarial.FULL if os.environ.get("FRAUD_SIM") == "full" else adversarial.QUICK
    seed = int(os.environ.get("FRAUD_SIM_SEED", SIM_SEED))
    report = adversarial.run(mode=mode, seed=seed, clock=clock, make_player=make_player, mint=mint)
    with capsys.disabled():
        minutes = report.simulated_seconds / 60
        print(f"\nadversarial simulation, {mode.name} mode, seed {seed}, {minutes:.0f} simulated min:")
        print(report.table(detail=int(os.environ.get("FRAUD_SIM_DETAIL", "0"))))

    issue = adversarial.ISSUE_BOT_KINDS
    assert report.humans_blocked == 0
    assert report.humans_quarantined <= 0.01 * len(report.humans)
    assert report.share_ratio(issue) <= 1.2
    assert report.recall(3, issue) >= 0.95
    for kind in issue:
        assert report.class_recall(kind, 3) == 1.0, kind
    assert report.class_recall("shy farmer", 12) == 1.0
    assert report.class_recall("mimic bot", 100) == 1.0
    # Every fresh account of the burst from one address is caught at its 1st or 2nd submission.
    assert all(b.caught_at is not None and b.caught_at <= 2 for b in report.population("fresh-account burst"))
