"""Prometheus metrics move with what the service does."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client
from prometheus_client import REGISTRY

from tests.conftest import submit


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.mark.embedded
def test_score_updates_latency_and_replays_are_counted(auth_client: Any, player: Any, mint: Callable[..., str]) -> None:
    route = {"method": "POST", "route": "/v1/scores/update"}
    updates = value("scoreboard_score_updates_total")
    replays = value("scoreboard_score_replays_total")
    timed = value("scoreboard_http_request_duration_seconds_count", **route)
    token = mint(player, 50)
    assert submit(auth_client, token).status_code == 200
    assert submit(auth_client, token).status_code == 409
    assert value("scoreboard_score_updates_total") == updates + 1
    assert value("scoreboard_score_replays_total") == replays + 1
    assert value("scoreboard_http_request_duration_seconds_count", **route) == timed + 2
    assert value("scoreboard_blocked_requests_total", status="409", code="action_token_replayed") >= 1


@pytest.mark.embedded
def test_failed_authentication_is_counted_by_code(db: None) -> None:
    before = value("scoreboard_failed_auth_total", reason="authentication_failed")
    response = Client().post(
        "/v1/scores/update", {"action_token": "x"}, content_type="application/json", HTTP_AUTHORIZATION="Bearer nope"
    )
    assert response.status_code == 401
    assert value("scoreboard_failed_auth_total", reason="authentication_failed") == before + 1


@pytest.mark.embedded
def test_unmatched_paths_do_not_create_a_label_per_path(db: None) -> None:
    # Letters, not digits: a sample's timestamp may contain any run of digits by chance.
    Client().get("/no/such/page/qzxjvw")
    exposition = Client().get("/metrics").content.decode()
    assert "qzxjvw" not in exposition
    assert 'route="unmatched"' in exposition


@pytest.mark.postgres
@pytest.mark.redis
def test_metrics_endpoint_shows_database_and_redis_gauges(db: None) -> None:
    response = Client().get("/metrics")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    text = response.content.decode()
    assert "scoreboard_db_up 1.0" in text
    assert "scoreboard_redis_up 1.0" in text
    assert "scoreboard_db_max_connections" in text
    used = next(line for line in text.splitlines() if line.startswith("scoreboard_redis_used_memory_bytes "))
    assert float(used.split()[1]) > 0
