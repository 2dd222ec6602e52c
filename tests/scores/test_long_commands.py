"""The long operator commands (index rebuild, drift check, export) do their work and report progress:
plain lines when their output is a log or a pipe, as here."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from scoreboard.progress import ENV_MODE
from scores import board_services, selectors
from scores.ranking import redis_index
from tests.conftest import submit

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


@pytest.fixture(autouse=True)
def _plain(monkeypatch: pytest.MonkeyPatch, settings: Any) -> None:
    monkeypatch.setenv(ENV_MODE, "plain")
    settings.FRAUD_BLOCK_THRESHOLD = 2.0
    settings.RATE_LIMIT_ENABLED = False


@pytest.fixture
def scored(db: None, make_player: Any, client_for: Any, mint: Any) -> list[Any]:
    board_services.board_create(board_id="weekly-sprint", title="Weekly", period="weekly")
    players = [make_player(username=f"cmd_{i}") for i in range(5)]
    for i, player in enumerate(players):
        assert submit(client_for(player), mint(player, increment=100 * (i + 1))).status_code == 200
    return players


def _run(*args: Any, **options: Any) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command(*args, stdout=out, stderr=err, **options)
    return out.getvalue(), err.getvalue()


def test_rebuild_reports_each_index(scored: list[Any], capsys: Any) -> None:
    out, _ = _run("rebuild_leaderboard")
    bars = capsys.readouterr().err  # the progress goes to stderr
    assert "global/all: 5 players" in out and "weekly-sprint/" in out
    assert "rebuild global/all: done, 5 players in" in bars
    assert "\r" not in bars


def test_drift_check_finds_and_repairs_a_missing_entry(scored: list[Any], capsys: Any) -> None:
    spec = selectors.board_get("global")
    assert spec is not None
    index = redis_index(spec, "all")
    assert index is not None
    index.forget(str(scored[0].pk))
    out, _ = _run("check_leaderboard_drift", "--board", "global", "--no-repair")
    assert "global: checked 5, missing 1" in out and "repaired" not in out
    out, _ = _run("check_leaderboard_drift")
    assert "global: checked 5, missing 1, stale 0, extra 0, repaired" in out
    assert "drift check: done, 2 boards in" in capsys.readouterr().err
    out, _ = _run("check_leaderboard_drift")
    assert "0 with drift" in out


def test_export_writes_every_row_in_board_order(scored: list[Any], tmp_path: Path, capsys: Any) -> None:
    target = tmp_path / "weekly.csv"
    out, _ = _run("export_board", "weekly-sprint", "--output", str(target))
    assert "5 rows of weekly-sprint/" in out
    rows = list(csv.DictReader(target.open()))
    assert [int(r["score"]) for r in rows] == [500, 400, 300, 200, 100]
    assert [int(r["rank"]) for r in rows] == [1, 2, 3, 4, 5]
    bars = capsys.readouterr().err
    assert "export weekly-sprint/" in bars and ": done, 5 rows in " in bars  # the summary line, on stderr
    with pytest.raises(CommandError):
        _run("export_board", "no-such-board")


def test_verbosity_zero_is_quiet(scored: list[Any], capsys: Any) -> None:
    _run("rebuild_leaderboard", verbosity=0)
    assert capsys.readouterr().err == ""
