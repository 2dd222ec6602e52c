"""bench/lean_floor.py, the baseline of ``bench.profile_update --compare ...,floor``, applies an update
(it shares ``scores.services.SUBMIT_SQL``: a change of the statement's parameters must reach it)."""

from __future__ import annotations

import io
import json
import sys
from typing import Any

import pytest

from accounts.models import User
from bench import lean_floor
from scores.models import ScoreHistory
from tests.conftest import access_token_for

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


@pytest.mark.django_db(transaction=True)  # Django's WSGI handler closes the connection around a request
def test_the_lean_floor_applies_an_update(player: User, mint: Any) -> None:
    body = json.dumps({"action_token": mint(player, increment=42)}).encode()
    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/v1/scores/update",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "HTTP_HOST": "127.0.0.1",
        "REMOTE_ADDR": "127.0.0.1",
        "CONTENT_TYPE": "application/json",
        "CONTENT_LENGTH": str(len(body)),
        "HTTP_AUTHORIZATION": f"Bearer {access_token_for(player)}",
        "wsgi.input": io.BytesIO(body),
        "wsgi.url_scheme": "http",
        "wsgi.errors": sys.stderr,
    }
    status: list[str] = []
    try:
        response = lean_floor.FloorHandler()(environ, lambda s, h, *a: status.append(s))  # type: ignore[arg-type]
        payload = json.loads(b"".join(response))
    finally:
        lean_floor.floor_keys_delete()
    assert status == ["200 OK"], payload
    assert payload["new_score"] == 42
    assert ScoreHistory.objects.filter(user=player, new_score=42).exists()
