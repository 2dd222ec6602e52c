"""Structured logs: JSON lines, the request id on each, security events at WARNING, no secrets."""

from __future__ import annotations

import io
import json
import logging
from typing import Any

import pytest
from django.test import Client

from scoreboard import logging as sb_logging

JWT = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"


@pytest.fixture
def json_lines() -> Any:
    """Capture what the configured JSON handler would write, as parsed objects."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(sb_logging.JsonFormatter())
    handler.addFilter(sb_logging.RequestIdFilter())
    root = logging.getLogger()
    root.addHandler(handler)

    def read() -> list[dict[str, Any]]:
        return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]

    yield read
    root.removeHandler(handler)


@pytest.mark.embedded
def test_every_line_is_json_with_the_bound_request_id(json_lines: Any) -> None:
    log = logging.getLogger("scoreboard.test")
    with sb_logging.bound_request_id("req-12345678"):
        log.warning("inside %s", "a request", extra={"score": 10})
    log.warning("outside")
    inside, outside = json_lines()
    assert inside["request_id"] == "req-12345678"
    assert inside["message"] == "inside a request"
    assert inside["level"] == "WARNING"
    assert inside["score"] == 10
    assert outside["request_id"] is None


@pytest.mark.embedded
def test_tokens_and_secrets_never_reach_a_line(json_lines: Any) -> None:
    log = logging.getLogger("scoreboard.test")
    log.warning(
        "auth header Authorization: Bearer %s password=hunter2 ACTION_TOKEN_SECRET=abc123",
        JWT,
        extra={"action_token": JWT, "jwt_secret": "s3cr3t", "note": f"token {JWT}"},
    )
    try:
        raise ValueError(f"bad token {JWT}")
    except ValueError:
        log.exception("failed")
    text = json.dumps(json_lines())
    for secret in (JWT, "hunter2", "abc123", "s3cr3t"):
        assert secret not in text
    first = json_lines()[0]
    assert first["action_token"] == sb_logging.REDACTED
    assert first["jwt_secret"] == sb_logging.REDACTED


@pytest.mark.embedded
@pytest.mark.parametrize(
    ("supplied", "kept"),
    [("abcdef0123456789", True), ("short", False), ("evil\nline-injected-value", False), ("a" * 65, False)],
)
def test_a_sane_incoming_request_id_is_kept_and_echoed(db: None, supplied: str, kept: bool) -> None:
    response = Client().get("/healthz", HTTP_X_REQUEST_ID=supplied)
    echoed = response["X-Request-ID"]
    assert (echoed == supplied) is kept
    assert 8 <= len(echoed) <= 64


@pytest.mark.embedded
def test_refused_requests_are_security_warnings_with_the_request_id(db: None, json_lines: Any) -> None:
    response = Client().post(
        "/v1/scores/update",
        {"action_token": JWT},
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {JWT}",
        HTTP_X_REQUEST_ID="trace-0000000001",
    )
    assert response.status_code == 401
    events = [line for line in json_lines() if line["logger"] == sb_logging.SECURITY_LOGGER]
    assert events, json_lines()
    event = events[-1]
    assert event["level"] == "WARNING"
    assert event["event"] == "failed_auth"
    assert event["request_id"] == "trace-0000000001"
    assert event["status"] == 401
    assert JWT not in json.dumps(json_lines())


@pytest.mark.embedded
def test_celery_tasks_log_the_request_id_of_their_caller_and_give_it_back() -> None:
    from scoreboard.celery import app

    @app.task(name="tests.ops.request_id_probe")
    def probe() -> str | None:
        return sb_logging.get_request_id()

    with sb_logging.bound_request_id("caller-req-0001"):
        assert probe.apply().get() == "caller-req-0001"
        assert sb_logging.get_request_id() == "caller-req-0001"
    result = probe.apply()
    assert result.get() == result.id  # a task nobody's request queued logs its own id
    assert sb_logging.get_request_id() is None
