"""Deploy checks: `check --deploy` is clean with DEBUG off behind a TLS proxy, development secrets
are refused with DEBUG off and announced loudly with real stores, /metrics stays off the public
path, and the admin sign-in is throttled."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.test import Client, override_settings

from scoreboard import ratelimit

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.embedded


def manage(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "JWT_", "ACTION_TOKEN_"))}
    base.update({"DATABASE_URL": "", "REDIS_URL": "", **env})
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=base, capture_output=True, text=True, timeout=120
    )


def production(**extra: str) -> dict[str, str]:
    return {
        "DJANGO_DEBUG": "0",
        "DJANGO_ALLOWED_HOSTS": "scoreboard.example.com",
        **{name: secrets.token_urlsafe(48) for name in ("DJANGO_SECRET_KEY", "JWT_SECRET", "ACTION_TOKEN_SECRET")},
        **extra,
    }


def test_check_deploy_is_clean_behind_a_tls_proxy() -> None:
    result = manage("check", "--deploy", "--fail-level", "WARNING", **production(DJANGO_TLS_PROXY="1"))
    assert result.returncode == 0, result.stderr + result.stdout
    assert "no issues" in result.stdout


def test_without_the_tls_proxy_setting_the_https_warnings_remain() -> None:
    result = manage("check", "--deploy", **production())
    output = result.stderr + result.stdout
    for check in ("security.W004", "security.W008", "security.W016"):  # HSTS, SSL redirect, CSRF cookie
        assert check in output, check
    # The session cookie: W010 or W012, depending on whether Django recognises the session middleware.
    assert "security.W010" in output or "security.W012" in output


@pytest.mark.parametrize("missing", ["DJANGO_SECRET_KEY", "JWT_SECRET", "ACTION_TOKEN_SECRET"])
def test_development_secrets_are_refused_with_debug_off(missing: str) -> None:
    env = production()
    env[missing] = "dev-insecure-" + "x" * 60  # a development value, however long
    result = manage("check", **env)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr and missing in result.stderr


def test_a_short_django_secret_key_is_refused_with_debug_off() -> None:
    result = manage("check", **production(DJANGO_SECRET_KEY=secrets.token_urlsafe(30)))  # 40 characters
    assert result.returncode != 0 and "at least 50" in result.stderr


def test_development_secrets_with_real_stores_print_a_banner() -> None:
    quiet = manage("check")  # the embedded demo: no banner
    assert "DEVELOPMENT SECRETS IN USE" not in quiet.stderr
    loud = manage("check", DATABASE_URL="postgres://postgres@127.0.0.1:5432/nowhere", REDIS_URL="redis://127.0.0.1:1/0")
    assert "!!! DEVELOPMENT SECRETS IN USE with PostgreSQL and Redis configured" in loud.stderr


@pytest.mark.django_db
def test_metrics_are_refused_when_they_came_through_the_proxy() -> None:
    assert Client().get("/metrics").status_code == 200  # a scraper inside the network
    proxied = Client().get("/metrics", HTTP_X_FORWARDED_FOR="203.0.113.5")
    assert proxied.status_code == 404 and proxied.json()["error"]["code"] == "not_found"


@pytest.mark.django_db
@override_settings(RATE_LIMIT_ADMIN_LOGIN_PER_MINUTE=3)
def test_the_admin_login_is_throttled_per_address(monkeypatch: pytest.MonkeyPatch) -> None:
    # The limiters' clocks stand still: four attempts straddling a window's end would start a new
    # window and the fourth would pass (the test failed so once in CI).
    import time
    import types

    import django_ratelimit.core

    frozen = time.time()
    monkeypatch.setattr(django_ratelimit.core, "time", types.SimpleNamespace(time=lambda: frozen))
    monkeypatch.setattr(ratelimit, "_now", lambda: frozen)
    ratelimit.local_counters.reset()
    ratelimit.breaker.reset()
    client = Client()
    attempts = [
        client.post("/admin/login/", {"username": "admin", "password": f"guess-{i}"}).status_code for i in range(4)
    ]
    assert attempts == [200, 200, 200, 429]  # 200: the form again, with an error
    elsewhere = Client(REMOTE_ADDR="198.51.100.9")
    assert elsewhere.post("/admin/login/", {"username": "a", "password": "b"}).status_code == 200
    assert client.get("/admin/login/").status_code == 200  # showing the form is not an attempt
