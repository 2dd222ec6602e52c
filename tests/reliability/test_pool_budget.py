"""The PostgreSQL connections each deployment can open, read from its files, stay under the
database's max_connections (100, PostgreSQL's default and this machine's)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "deploy"))
import serve  # noqa: E402

pytestmark = pytest.mark.embedded

MAX_CONNECTIONS = 100
SETTINGS_POOL_DEFAULT = 8  # scoreboard/settings.py DB_POOL_MAX_SIZE
# A sync gunicorn worker: one persistent connection. A Celery process (single-threaded tasks): one
# for its tasks and one for a background thread (the Redis reconnect hook).
PER_SYNC_WORKER = 1
PER_CELERY_PROCESS = 2


def _concurrency(args: list[str]) -> int:
    return next(int(a.split("=", 1)[1]) for a in args if a.startswith("--concurrency="))


def test_settings_default_pool_is_the_one_counted_here() -> None:
    text = (ROOT / "scoreboard" / "settings.py").read_text()
    assert f'env.int("DB_POOL_MAX_SIZE", default={SETTINGS_POOL_DEFAULT})' in text


def test_make_serve_stays_under_max_connections() -> None:
    plan = serve.plan_from_env({"PORT": "8000"})
    total = plan.wsgi_workers * PER_SYNC_WORKER + len(plan.asgi_ports) * SETTINGS_POOL_DEFAULT
    total += (plan.celery_concurrency + 1) * PER_CELERY_PROCESS
    assert total < MAX_CONNECTIONS / 2, total  # room for a second topology (the bench) beside it


def test_compose_stays_under_max_connections() -> None:
    services: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    api_workers = int(services["api"]["environment"]["WEB_CONCURRENCY"].split(":-")[1].rstrip("}"))
    realtime_pool = int(services["realtime"]["environment"]["DB_POOL_MAX_SIZE"].split(":-")[1].rstrip("}"))
    celery = (_concurrency(services["worker"]["command"]) + 1 + 1) * PER_CELERY_PROCESS  # children, parent, beat
    total = api_workers * PER_SYNC_WORKER + realtime_pool + celery
    assert total < MAX_CONNECTIONS, total


def _deployment(name: str) -> dict[str, Any]:
    return yaml.safe_load((ROOT / "deploy" / "k8s" / f"{name}.yaml").read_text().split("\n---")[0])


def _env(deployment: dict[str, Any], name: str) -> str:
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    return next(e["value"] for e in container["env"] if e["name"] == name)


def test_kubernetes_stays_under_max_connections() -> None:
    api, realtime, worker = _deployment("api"), _deployment("realtime"), _deployment("worker")
    total = api["spec"]["replicas"] * int(_env(api, "WEB_CONCURRENCY")) * PER_SYNC_WORKER
    total += realtime["spec"]["replicas"] * int(_env(realtime, "DB_POOL_MAX_SIZE"))
    worker_args = worker["spec"]["template"]["spec"]["containers"][0]["args"]
    total += worker["spec"]["replicas"] * (_concurrency(worker_args) + 1) * PER_CELERY_PROCESS
    total += PER_CELERY_PROCESS  # beat
    # A rolling update surges one extra pod of each (maxSurge 1).
    total += int(_env(api, "WEB_CONCURRENCY")) + int(_env(realtime, "DB_POOL_MAX_SIZE"))
    assert total < MAX_CONNECTIONS, total
