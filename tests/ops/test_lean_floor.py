"""bench/lean_floor.py, the baseline of ``bench.profile_update --compare ...,floor``, applies an update
(it shares ``scores.services.SUBMIT_SQL``: a change of the statement's parameters must reach it)."""

from __future__ import annotations

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
