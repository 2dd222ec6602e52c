"""The delivery figures of make bench: production's live-board path is the headline, nginx beside it."""

from __future__ import annotations

from pathlib import Path

from bench import report
from bench.topology import gc_pauses


def test_gc_pauses_counts_the_collections_of_the_given_processes_inside_the_window(tmp_path: Path) -> None:
    (tmp_path / "gc-11.log").write_text(
        "99.5 2 300.0 10\n"  # before the window
        "100.0 2 150.5 7\n"
        "101.0 1 20.0 3\n"
        "102.0 2 50.0 1\n"
        "105.0 0 9.0 0\n"  # at the end: outside
    )
    (tmp_path / "gc-12.log").write_text("101.5 1 30.0 2\nbroken\n")
    (tmp_path / "gc-13.log").write_text("101.5 2 999.0 2\n")  # not one of the processes asked about
    got = gc_pauses(tmp_path, [11, 12, 14], 100.0, 105.0)
    assert got["by_generation"] == {
        "gen1": {"count": 2, "max_ms": 30.0, "total_ms": 50.0},
        "gen2": {"count": 2, "max_ms": 150.5, "total_ms": 200.5},
    }
    assert got["longest_by_process"] == {"11": 150.5, "12": 30.0}


def test_the_headline_is_the_production_path_and_nginx_is_secondary() -> None:
    live = {"clients": 2000, "alive_at_end": 2000, "frames_per_client_per_s": 3.0, "p50": 10.0, "p95": 30.0}
    result = {
        "players": 1000,
        "ws_app": [{**live, "path": "reuseport4", "window_cpu": {"servers_cores": 0.2, "clients_cores": 0.1}}],
        "ws_app_nginx": [{**live, "path": "nginx", "p95": 90.0}],
        "ws_baseline": [{**live, "p95": 20.0, "gc_window": {"by_generation": {}}}],
    }
    rows = {row[0]: row for row in report.rows(result)}
    headline = rows[
        "Delivery latency p50 / p95 / p99, 2,000 clients, production path (reuseport4; 2000 alive,"
        " 3.0 snapshots/s each)"
    ]
    assert headline[3:] == ("1.50x", "p95 ≤ 35 ms")
    secondary = rows[
        "(secondary: through nginx) Delivery p50 / p95 / p99, 2,000 clients (2000 alive, 3.0 snapshots/s each)"
    ]
    assert secondary[2:4] == ("bare websockets: 20.0 ms p95; production path: 30.0 ms", "4.50x")
    text = report.markdown(result)
    assert "| 2,000 | reuseport4 | 30.0 | — | 0.2 | 0.1 | — | — | none | none |" in text


def test_a_delivery_ab_variant_names_its_server_group_its_clients_settings_and_a_storm() -> None:
    import pytest

    from bench.delivery_ab import parse_variant
    from bench.topology import reuseport_spec

    variant, env, storm = parse_variant("reuseport4@REALTIME_GC_FREEZE_CONNECTS=0+nice19+read65536+storm8000")
    assert variant == "reuseport4@REALTIME_GC_FREEZE_CONNECTS=0"
    assert env == {"BENCH_CLIENT_NICE": "19", "BENCH_WS_READ_SIZE": "65536"}
    assert storm == 8000
    assert parse_variant("bare") == ("bare", {}, 0)
    assert reuseport_spec(variant[9:]) == (4, {"REALTIME_GC_FREEZE_CONNECTS": "0"}, 0)
    assert reuseport_spec("4@nice=10") == (4, {}, 10)
    with pytest.raises(SystemExit):
        parse_variant("reuseport4+fast")


def test_a_reuseport_variant_brings_its_server_group() -> None:
    from bench.delivery_ab import reuseport_groups

    assert reuseport_groups(["reuseport4", "nginx"], "") == "4"
    assert reuseport_groups(["reuseport4", "reuseport2+nice19", "reuseport4@nice=10"], "4") == "4,2,4@nice=10"
    assert reuseport_groups(["direct", "bare"], "2") == "2"
