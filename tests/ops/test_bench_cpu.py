"""bench/cpu.py: the CPU meter behind the benchmark's "where the CPU goes" table, on real processes."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.cpu import CpuMeter, ceiling_per_s, per_request_ms, pids_named
from bench.topology import cpu_seconds

pytestmark = pytest.mark.embedded

# Spins until it has used this much CPU itself (so the amount does not depend on how busy the box is).
SPIN = "import sys, time\nlimit = float(sys.argv[1])\nwhile time.process_time() < limit:\n    pass\n"
TICK = 0.02  # /proc reports CPU time in 10 ms ticks


def _spinner(seconds: float) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", SPIN, str(seconds)])


def test_meter_splits_cpu_between_a_group_the_load_generator_and_the_box() -> None:
    server = _spinner(60.0)  # stands for a server process: counted by pid while it runs
    try:
        meter = CpuMeter({"server": lambda: [server.pid]})
        with meter.measure() as used:
            start = cpu_seconds([server.pid])
            loadgen = _spinner(0.3)  # stands for the load generator: a child that exits inside the block
            loadgen.wait()
            while cpu_seconds([server.pid]) - start < 0.2:
                time.sleep(0.01)
    finally:
        server.kill()
        server.wait()
    assert used["server"] >= 0.2
    assert used["loadgen"] >= 0.3 - TICK
    assert used["box"] >= used["server"] + used["loadgen"] - 2 * TICK
    assert used["other"] >= 0.0
    assert {"postgres", "redis", "nginx"} <= used.keys()


def test_a_process_that_exits_during_the_block_does_not_hide_the_others() -> None:
    busy_before = subprocess.Popen([sys.executable, "-c", SPIN + "time.sleep(60)\n", "0.4"])
    server = _spinner(60.0)
    try:
        while cpu_seconds([busy_before.pid]) < 0.4 - TICK:  # it has used its CPU before the block
            time.sleep(0.01)
        meter = CpuMeter({"servers": lambda: [busy_before.pid, server.pid]})
        with meter.measure() as used:
            start = cpu_seconds([server.pid])
            busy_before.kill()  # a worker restarted mid-step: its past CPU must not be subtracted
            busy_before.wait()
            while cpu_seconds([server.pid]) - start < 0.2:
                time.sleep(0.01)
    finally:
        for proc in (busy_before, server):
            proc.kill()
            proc.wait()
    assert used["servers"] >= 0.2


def test_processes_are_found_by_command_name() -> None:
    spinner = _spinner(60.0)
    try:
        time.sleep(0.1)
        name = Path(f"/proc/{spinner.pid}/comm").read_text().strip()
        assert spinner.pid in pids_named(name)
        assert spinner.pid not in pids_named(name + "-no-such-process")
    finally:
        spinner.kill()
        spinner.wait()


def test_per_request_figures_and_the_ceiling() -> None:
    assert per_request_ms({"box": 2.0, "gunicorn": 1.0}, 1000) == {"box": 2.0, "gunicorn": 1.0}
    assert per_request_ms({"box": 2.0}, 0) is None
    assert ceiling_per_s(4.0, cpus=2) == 500.0
    assert ceiling_per_s(None, cpus=2) is None


def test_the_report_shows_where_the_cpu_goes_and_the_ceiling() -> None:
    from bench import report

    cpu = {"box": 5.0, "gunicorn": 3.5, "postgres": 0.5, "redis": 0.3, "nginx": 0.2, "loadgen": 0.3, "other": 0.2}
    update = {"achieved_per_s": 199.0, "p50": 5.0, "p95": 9.0, "p99": 12.0, "error_rate": 0.0, "statuses": {}}
    update.update(errors={}, wsgi_cpu_ms_per_request=3.5)
    read = {"achieved_per_s": 40.0, "p95": 4.0}
    step = {"rate": 200, "update": update, "read": read, "cpu_ms_per_request": cpu}
    result = {
        "players": 1000,
        "machine": {"cpus": 2},
        "update_steps": [step],
        "sustained": {"rate": 200, "achieved_per_s": 199.0},
    }
    text = report.markdown(result)
    assert "| 200 | 199 | 5.0 | 3.5 | 0.5 | 0.3 | 0.2 | 0.3 | — | — | 0.2 | 400 |" in text
    assert "5.0 ms: ceiling 400 req/s on 2 CPUs" in text


def test_the_report_puts_the_three_board_scenario_beside_the_single_board_figure() -> None:
    from bench import report

    result = {
        "players": 1000,
        "machine": {"cpus": 2},
        "update_steps": [],
        "sustained": {"rate": 400, "achieved_per_s": 398.0},
        "update_steps_boards3": [],
        "sustained_boards3": {"rate": 300, "achieved_per_s": 299.0},
    }
    figures = {row[0]: row for row in report.rows(result)}
    boards = figures["Sustained updates/s with three boards fed (global + daily + weekly), same run"]
    assert boards[1:4] == ("299", "one board (above): 398/s", "0.75x")
    assert "three boards" not in report.markdown({**result, "update_steps_boards3": None, "sustained_boards3": None})
