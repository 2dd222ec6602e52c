"""/healthz (alive) and /readyz (database, migrations, Redis)."""

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
def test_readyz_is_unready_while_redis_is_unreachable(db: None, settings: Any) -> None:
    assert Client().get("/readyz").json()["data"]["checks"]["redis"] == "ok"
    settings.REDIS_URL = "redis://127.0.0.1:8498/0"  # nothing listens there
    response = Client().get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["success"] is False
    assert body["error"]["code"] == "not_ready"
    assert body["error"]["details"]["checks"]["redis"].startswith("unreachable")
    assert body["error"]["details"]["checks"]["database"] == "ok"


@pytest.mark.embedded
@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
def test_health_endpoints_refuse_other_methods_in_json(db: None, path: str) -> None:
    response = Client().post(path)
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"
