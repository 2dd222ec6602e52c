"""deploy/gunicorn.conf.py: sync workers by default, threaded workers with keep-alive on request."""

from __future__ import annotations

import http.client
import os
import runpy
from pathlib import Path

import pytest
from django.conf import settings

from tests.realtime.servers import free_port, gunicorn_started, session_database_url

ROOT = Path(__file__).resolve().parents[2]
CONF = ROOT / "deploy" / "gunicorn.conf.py"


def _conf(monkeypatch: pytest.MonkeyPatch, **env: str) -> dict[str, object]:
    for name in ("GUNICORN_THREADS", "GUNICORN_KEEPALIVE", "WEB_CONCURRENCY", "DB_POOL", "DB_POOL_MAX_SIZE"):
        monkeypatch.setenv(name, "")  # recorded, so what the config file sets is undone after the test
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return runpy.run_path(str(CONF))


def test_sync_workers_unless_threads_are_asked_for(monkeypatch: pytest.MonkeyPatch) -> None:
    conf = _conf(monkeypatch)
    assert (conf["worker_class"], conf["threads"], conf["workers"]) == ("sync", 1, 3)
    conf = _conf(monkeypatch, GUNICORN_THREADS="4", WEB_CONCURRENCY="2")
    assert (conf["worker_class"], conf["threads"], conf["workers"]) == ("gthread", 4, 2)
    # nginx closes idle upstream connections after 60 s; gunicorn must wait longer than that.
    assert isinstance(conf["keepalive"], int) and conf["keepalive"] > 60


def test_sync_workers_keep_a_connection_and_threaded_workers_share_a_pool(monkeypatch: pytest.MonkeyPatch) -> None:
    _conf(monkeypatch)
    assert os.environ.get("DB_POOL") == "0"  # one request at a time: a persistent connection is safe
    assert "DB_POOL_MAX_SIZE" not in os.environ
    _conf(monkeypatch, GUNICORN_THREADS="4")
    assert "DB_POOL" not in os.environ  # the default: pooled
    assert os.environ.get("DB_POOL_MAX_SIZE") == "4"  # one connection per thread at most


def _get(conn: http.client.HTTPConnection, path: str) -> http.client.HTTPResponse:
    conn.request("GET", path)
    response = conn.getresponse()
    response.read()
    return response


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(("threads", "keeps_alive"), [("1", False), ("2", True)])
def test_the_app_under_gunicorn_with_this_config(threads: str, keeps_alive: bool, tmp_path: Path) -> None:
    port = free_port(set())
    env = {
        **os.environ,
        "DATABASE_URL": session_database_url(),  # the test database (PostgreSQL run only: not an embedded test)
        "REDIS_URL": settings.REDIS_URL,
        "GUNICORN_THREADS": threads,
        "WEB_CONCURRENCY": "1",
        "LOG_LEVEL": "WARNING",
    }
    # Single-process metrics: prometheus_client treats even an empty value as a directory (the cwd).
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    process = gunicorn_started("scoreboard.wsgi:application", port, tmp_path / "gunicorn.log", env, timeout=30)
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        first = _get(conn, "/v1/leaderboard")
        assert first.status == 200
        assert first.will_close is not keeps_alive  # sync workers close every connection
        second = _get(conn, "/v1/leaderboard")  # on the same connection when it was kept
        assert second.status == 200
        conn.close()
    finally:
        process.terminate()
        process.wait(timeout=20)
