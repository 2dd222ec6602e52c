"""/healthz (alive) and /readyz (database and migrations; Redis reported, never deciding)."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from scoreboard.version import __version__


@pytest.mark.embedded
def test_healthz_answers_without_touching_the_stores() -> None:
    response = Client().get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"success": True, "data": {"status": "alive", "version": __version__}}


@pytest.mark.embedded
def test_readyz_checks_database_and_migrations(db: None) -> None:
    response = Client().get("/readyz")
    assert response.status_code == 200
    checks = response.json()["data"]["checks"]
    assert checks["database"] == "ok"
    assert checks["migrations"] == "ok"


@pytest.mark.redis
def test_readyz_stays_ready_and_reports_redis_degraded_while_it_is_unreachable(db: None, settings: Any) -> None:
    """Redis holds derived data only: its outage must not pull every pod out of service."""
    assert Client().get("/readyz").json()["data"]["checks"]["redis"] == "ok"
    settings.REDIS_URL = "redis://127.0.0.1:8498/0"  # nothing listens there
    response = Client().get("/readyz")
    assert response.status_code == 200
    data = response.json()["data"]
    assert data["status"] == "degraded"
    assert data["checks"] == {"database": "ok", "migrations": "ok", "redis": "degraded"}


@pytest.mark.embedded
def test_readyz_is_unready_when_the_database_is(db: None, monkeypatch: pytest.MonkeyPatch) -> None:
    from scoreboard import health

    monkeypatch.setattr(health, "_database_check", lambda: (False, "unreachable: OperationalError"))
    response = Client().get("/readyz")
    assert response.status_code == 503
    assert response.json()["error"]["details"]["checks"]["database"].startswith("unreachable")


@pytest.mark.embedded
@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
def test_health_endpoints_refuse_other_methods_in_json(db: None, path: str) -> None:
    response = Client().post(path)
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"
