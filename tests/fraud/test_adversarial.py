"""The adversarial simulation in its quick mode, asserted on a fixed seed (tests/fraud/adversarial.py).

It plays against a real server: the production WSGI application under gunicorn with the
production config (``tests.fraud.simserver``: two sync workers, on the test database and Redis,
its clocks on the simulation's clock), each player's address in X-Forwarded-For. ``FRAUD_SIM_SERVER=0``
plays in this process through Django's test client instead (what ``FRAUD_SIM_DETAIL=1``'s per-player
verdicts need). ``make fraud-sim`` runs the full mode (FRAUD_SIM=full) and prints the same table.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings

from fraud import population
from tests.fraud import adversarial, simclock
from tests.realtime.servers import free_port, gunicorn_started, session_database_url

# transaction=True: the server's processes only see committed rows.
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres, pytest.mark.redis]

SIM_SEED = 20261202
ROOT = Path(__file__).resolve().parents[2]
SERVER_START_SECONDS = 60


def _through_server() -> bool:
    return os.environ.get("FRAUD_SIM_SERVER", "1") != "0"


@pytest.fixture
def sim_clock(clock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """In server mode, the clock fixture's hooks moved onto a clock the server processes share."""
    if not _through_server():
        return clock
    shared = simclock.SharedClock(tmp_path / "clock", start=clock.now)
    simclock.install(shared, monkeypatch.setattr)
    population.forget()
    return shared


@pytest.fixture
def sim_server(sim_clock, tmp_path: Path) -> Iterator[str | None]:
    """gunicorn serving tests.fraud.simserver on a free port; None in in-process mode."""
    if not _through_server():
        yield None
        return
    port = free_port(set())
    env = {
        **os.environ,
        "DATABASE_URL": session_database_url(),
        "REDIS_URL": settings.REDIS_URL,
        simclock.CLOCK_FILE_ENV: str(tmp_path / "clock"),
        "TRUSTED_PROXIES": "127.0.0.1",  # the players' addresses come in X-Forwarded-For, as from nginx
        "WEB_CONCURRENCY": "2",
        "GUNICORN_THREADS": "1",
        "LOG_LEVEL": "WARNING",
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)  # single-process metrics
    log = tmp_path / "gunicorn.log"
    process = gunicorn_started("tests.fraud.simserver:application", port, log, env, timeout=SERVER_START_SECONDS)
    try:
        yield f"http://127.0.0.1:{port}"
        assert process.poll() is None, log.read_text()[-3000:]
    finally:
        process.terminate()
        process.wait(timeout=30)
    errors = [line for line in log.read_text(errors="replace").splitlines() if '"level": "ERROR"' in line]
    assert not errors, "\n".join(errors[:5])


def test_adversarial_simulation_quick(make_player, mint, sim_clock, sim_server, capsys):
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
    report = adversarial.run(
        mode=mode, seed=seed, clock=sim_clock, make_player=make_player, mint=mint, server=sim_server
    )
    with capsys.disabled():
        minutes = report.simulated_seconds / 60
        where = f"against {sim_server}" if sim_server else "in this process"
        print(f"\nadversarial simulation, {mode.name} mode, seed {seed}, {minutes:.0f} simulated min, {where}:")
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
