"""The WSGI fast path serves a usual ``POST /v1/scores/update`` (scoreboard/fastpath.py) with Django's
answer: the same status, headers and body for the same request, success or refusal (replay, a bad
action token, a limit, a disabled player, an unexpected error), the limits counted once, the same
metrics and security lines; every request it does not take whole goes to Django unchanged."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

import orjson
import pytest
from django.db import OperationalError
from django.test import override_settings
from prometheus_client import REGISTRY

from accounts.models import User
from scoreboard.fastpath import FastPath
from scoreboard.wsgi import django_application
from scores.models import BoardEntry
from tests.conftest import access_token_for
from tests.scoreboard.test_fastpath import (
    Counting,
    Response,
    _keep_the_test_transaction,
    call,
    django_app,
    fast,
    same_answer,
)

pytestmark = [pytest.mark.django_db, pytest.mark.redis]

# The read tests' fixtures: the request signals keep the test's transaction (autouse), Django's
# application counting its calls, the fast path in front of it.
__all__ = ["_keep_the_test_transaction", "django_app", "fast"]

# Limits on (the fast path needs them counted in the pre-write call) and high enough for a test.
ROOMY = {
    "RATE_LIMIT_ENABLED": True,
    "RATE_LIMIT_USER_PER_MINUTE": 1000,
    "RATE_LIMIT_IP_PER_MINUTE": 100_000,
    "RATE_LIMIT_GLOBAL_PER_MINUTE": 100_000,
    "FRAUD_FLAG_THRESHOLD": 2.0,
    "FRAUD_BLOCK_THRESHOLD": 2.0,
    "FRAUD_QUARANTINE_THRESHOLD": 2.0,
}


@pytest.fixture(autouse=True)
def _roomy_limits() -> Iterable[None]:
    with override_settings(**ROOMY):
        yield


def post(
    app: Callable[..., Iterable[bytes]],
    jwt: str | None,
    body: bytes | dict[str, Any],
    **meta: str,
) -> Response:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    auth = {"HTTP_AUTHORIZATION": f"Bearer {jwt}"} if jwt is not None else {}
    return call(app, path="/v1/scores/update", method="POST", body=raw, **auth, **meta)


def update(app: Callable[..., Iterable[bytes]], user: User, token: str, **meta: str) -> Response:
    return post(app, access_token_for(user), {"action_token": token, "metadata": {"level_id": "l1"}}, **meta)


def test_a_usual_update_is_served_fast_with_djangos_answer(
    make_player: Callable[..., User], fast: FastPath, django_app: Counting, mint: Any
) -> None:
    one, two = make_player(username="fast1"), make_player(username="slow1")
    served = update(fast, one, mint(one, increment=100))
    assert django_app.calls == 0  # answered by the fast path itself
    through_django = update(django_application, two, mint(two, increment=100))
    assert served[0] == through_django[0] == 200
    (_, fast_headers, fast_body), (_, django_headers, django_body) = served, through_django
    assert {k: v for k, v in fast_headers.items() if k != "X-Request-ID"} == {
        k: v for k, v in django_headers.items() if k != "X-Request-ID"
    }

    def shape(body: bytes, user: User) -> dict[str, Any]:
        data = orjson.loads(body)["data"]
        assert data["user_id"] == str(user.pk)
        ranks = {"user_id", "new_rank", "old_rank"}
        return {k: v for k, v in data.items() if k not in ranks and k != "boards"} | {
            "boards": [{k: v for k, v in b.items() if k not in ranks} for b in data["boards"]]
        }

    assert shape(fast_body, one) == shape(django_body, two)
    assert orjson.loads(fast_body)["data"]["new_score"] == 100
    one.refresh_from_db()
    assert one.current_score == 100
    assert BoardEntry.objects.get(user=one, board_id="global").score == 100


def test_a_replay_is_djangos_409_with_the_original_result(
    player: User, fast: FastPath, django_app: Counting, mint: Any
) -> None:
    token = mint(player, increment=40)
    assert update(fast, player, token)[0] == 200
    replayed = update(fast, player, token)
    assert django_app.calls == 0
    assert replayed[0] == 409 and b'"action_token_replayed"' in replayed[2]
    same_answer(replayed, update(django_application, player, token))
    player.refresh_from_db()
    assert player.current_score == 40  # counted once


def test_a_forged_action_token_is_djangos_401(
    player: User, fast: FastPath, django_app: Counting, mint: Any, caplog: pytest.LogCaptureFixture
) -> None:
    forged = mint(player, increment=10)[:-4] + "AAAA"
    with caplog.at_level(logging.WARNING, logger="scoreboard.security"):
        refused = update(fast, player, forged)
    assert django_app.calls == 0
    assert refused[0] == 401
    same_answer(refused, update(django_application, player, forged))
    lines = [r for r in caplog.records if getattr(r, "event", None) == "failed_auth"]
    assert lines and lines[0].path == "/v1/scores/update"  # type: ignore[attr-defined]


def test_the_per_player_limit_counts_each_update_once_and_answers_djangos_429(
    player: User, fast: FastPath, django_app: Counting, mint: Any
) -> None:
    with override_settings(RATE_LIMIT_USER_PER_MINUTE=2):
        assert update(fast, player, mint(player, increment=1))[0] == 200
        assert update(fast, player, mint(player, increment=1))[0] == 200
        over = update(fast, player, mint(player, increment=1))
        through_django = update(django_application, player, mint(player, increment=1))
    assert django_app.calls == 0
    assert over[0] == through_django[0] == 429
    assert over[2] == through_django[2]
    assert int(over[1]["Retry-After"]) > 0
    assert {k for k in over[1] if k != "X-Request-ID"} == {k for k in through_django[1] if k != "X-Request-ID"}
    player.refresh_from_db()
    assert player.current_score == 2


def test_a_player_disabled_after_their_last_update_is_djangos_403(
    player: User, fast: FastPath, django_app: Counting, mint: Any
) -> None:
    jwt = access_token_for(player)
    body = {"action_token": mint(player, increment=5)}
    assert post(fast, jwt, body)[0] == 200  # the player's card is warm now
    player.refresh_from_db()
    player.is_active = False
    player.save()
    refused = post(fast, jwt, {"action_token": mint(player, increment=5)})
    assert django_app.calls == 0
    assert refused[0] == 403 and b'"account_disabled"' in refused[2]
    same_answer(refused, post(django_application, jwt, {"action_token": mint(player, increment=5)}))
    player.refresh_from_db()
    assert player.current_score == 5


@pytest.mark.parametrize(
    ("failure", "status"),
    [(RuntimeError("boom"), 500), (OperationalError("the database went away"), 503)],
)
def test_an_unexpected_error_is_the_middlewares_json_answer(
    player: User,
    fast: FastPath,
    django_app: Counting,
    mint: Any,
    monkeypatch: pytest.MonkeyPatch,
    failure: Exception,
    status: int,
) -> None:
    def broken(**kwargs: Any) -> Any:
        raise failure

    monkeypatch.setattr("scores.services.score_submit", broken)
    refused = update(fast, player, mint(player))
    assert django_app.calls == 0
    assert refused[0] == status and refused[1]["Content-Type"] == "application/json"
    same_answer(refused, update(django_application, player, mint(player)))


def test_the_fast_path_counts_the_request_under_djangos_route_label(
    make_player: Callable[..., User], fast: FastPath, mint: Any
) -> None:
    labels = {"method": "POST", "route": "/v1/scores/update", "status": "200"}
    before = REGISTRY.get_sample_value("scoreboard_http_requests_total", labels) or 0.0
    one, two = make_player(), make_player()
    update(fast, one, mint(one))
    update(django_application, two, mint(two))
    assert REGISTRY.get_sample_value("scoreboard_http_requests_total", labels) == before + 2


@pytest.mark.parametrize(
    ("change", "status"),
    [
        ({"jwt": "not-a-token"}, 401),
        ({"jwt": None}, 401),
        ({"body": {"action_token": "x", "extra": 1}}, 400),
        ({"body": b"{not json"}, 400),
        ({"metadata": {"level_id": " padded "}}, 200),  # DRF trims it: the serializer's to take
        ({"meta": {"CONTENT_TYPE": "text/plain"}}, 415),
        ({"meta": {"HTTP_ACCEPT": "text/html"}}, 406),
        ({"meta": {"CONTENT_LENGTH": "999999"}}, 413),
        ({"meta": {"HTTP_HOST": "evil.example"}}, 400),
    ],
)
def test_anything_unusual_goes_to_django_unchanged(
    player: User, fast: FastPath, django_app: Counting, mint: Any, change: dict[str, Any], status: int
) -> None:
    jwt = change.get("jwt", access_token_for(player))
    body = change.get(
        "body", {"action_token": mint(player), **({"metadata": change["metadata"]} if "metadata" in change else {})}
    )
    answer = post(fast, jwt, body, **change.get("meta", {}))
    assert django_app.calls == 1
    assert answer[0] == status


def test_limits_off_or_no_redis_card_go_to_django(
    player: User, fast: FastPath, django_app: Counting, mint: Any
) -> None:
    with override_settings(RATE_LIMIT_ENABLED=False):
        assert update(fast, player, mint(player))[0] == 200
    assert django_app.calls == 1
    with override_settings(FAST_PATH=False):
        assert update(fast, player, mint(player))[0] == 200
    assert django_app.calls == 2
