"""bench/lean_floor.py, the baseline of ``bench.profile_update --compare ...,floor``, applies an update
(it shares ``scores.services.SUBMIT_SQL``: a change of the statement's parameters must reach it)."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from accounts.models import User
from bench import lean_floor
from bench.wsgi_request import update_environ
from scores.models import ScoreHistory
from tests.conftest import access_token_for

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


@pytest.mark.django_db(transaction=True)  # Django's WSGI handler closes the connection around a request
def test_the_lean_floor_applies_an_update(player: User, mint: Any) -> None:
    environ = update_environ(mint(player, increment=42), access_token_for(player))
    status: list[str] = []
    try:
        response = lean_floor.FloorHandler()(environ, lambda s, h, *a: status.append(s))  # type: ignore[arg-type]
        payload = json.loads(b"".join(response))
    finally:
        lean_floor.floor_keys_delete()
    assert status == ["200 OK"], payload
    assert payload["new_score"] == 42
    assert ScoreHistory.objects.filter(user=player, new_score=42).exists()


@pytest.mark.django_db(transaction=True)
def test_the_lean_floor_serves_its_top_ten(player: User, mint: Any) -> None:
    handler = lean_floor.FloorHandler()
    try:
        handler(update_environ(mint(player, increment=42), access_token_for(player)), lambda s, h, *a: None)  # type: ignore[arg-type]
        status: list[str] = []
        environ = {
            **update_environ("unused", "unused"),
            "REQUEST_METHOD": "GET",
            "PATH_INFO": "/v1/leaderboard",
            "CONTENT_LENGTH": "0",
            "wsgi.input": io.BytesIO(b""),
        }
        payload = json.loads(b"".join(handler(environ, lambda s, h, *a: status.append(s))))  # type: ignore[arg-type]
    finally:
        lean_floor.floor_keys_delete()
    assert status == ["200 OK"], payload
    assert payload["leaderboard"][0] == {"rank": 1, "user_id": str(player.pk), "score": 42}
