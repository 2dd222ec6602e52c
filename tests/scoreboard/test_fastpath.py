"""The WSGI fast path (scoreboard/fastpath.py) answers GET /v1/leaderboard and a board's entries as Django would:
the same status, headers and body for the same request, the same per-IP limit, metrics, request id
and security line, and every request it does not fully understand goes to Django."""

from __future__ import annotations

import io
import logging
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pytest
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from django.test import override_settings
from prometheus_client import REGISTRY

from accounts.models import User
from scoreboard.fastpath import FastPath
from scoreboard.replica import REPLICA
from scoreboard.wsgi import application, django_application
from scores.models import BoardEntry
from tests.conftest import submit
from tests.scores.conftest import UNTHROTTLED

pytestmark = [pytest.mark.django_db, pytest.mark.redis]

Response = tuple[int, dict[str, str], bytes]


class Counting:
    """Django's WSGI application (the one gunicorn serves, or ``app``), counting the requests that reach it."""

    def __init__(self, app: Callable[..., Iterable[bytes]] = django_application) -> None:
        self.app, self.calls = app, 0

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        self.calls += 1
        return self.app(environ, start_response)


@pytest.fixture(autouse=True)
def _keep_the_test_transaction(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """As Django's test client does: the request signals (and the fast path's own call) must not
    close the connections of the test's transaction. (A test with a transaction of its own keeps them.)"""
    if "transactional_db" not in request.fixturenames and not _transactional(request):
        monkeypatch.setattr("scoreboard.fastpath.close_old_connections", lambda: None)
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


def _transactional(request: pytest.FixtureRequest) -> bool:
    marker = request.node.get_closest_marker("django_db")
    return bool(marker and marker.kwargs.get("transaction"))


@pytest.fixture
def django_app() -> Counting:
    return Counting()


@pytest.fixture
def fast(django_app: Counting) -> FastPath:
    return FastPath(django_app)


@pytest.fixture
def board(make_player: Callable[..., User], client_for: Any, mint: Any) -> list[User]:
    players = [make_player(username=f"fp{i}") for i in range(4)]
    with override_settings(**UNTHROTTLED):
        for i, player in enumerate(players):
            assert submit(client_for(player), mint(player, increment=10 * (i + 1))).status_code == 200
    return players


def call(
    app: Callable[..., Iterable[bytes]],
    query: str = "",
    path: str = "/v1/leaderboard",
    method: str = "GET",
    body: bytes = b"",
    **meta: Any,
) -> Response:
    environ: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "HTTP_HOST": "127.0.0.1",
        "REMOTE_ADDR": "127.0.0.1",
        "wsgi.input": io.BytesIO(body),
        "wsgi.url_scheme": "http",
        "wsgi.errors": sys.stderr,
        **({"CONTENT_TYPE": "application/json", "CONTENT_LENGTH": str(len(body))} if body else {}),
        **meta,
    }
    started: list[Any] = []
    chunks = app(environ, lambda status, headers, *exc: started.append((status, headers)))
    body = b"".join(chunks)
    getattr(chunks, "close", lambda: None)()
    status, headers = started[0]
    return int(status.split()[0]), dict(headers), body


def same_answer(fast_response: Response, django_response: Response) -> None:
    """Status, body and every header but the request id (fresh per request) alike."""
    (fs, fh, fb), (ds, dh, db) = fast_response, django_response
    assert fs == ds
    assert fb == db
    assert {k: v for k, v in fh.items() if k != "X-Request-ID"} == {k: v for k, v in dh.items() if k != "X-Request-ID"}
    assert len(fh["X-Request-ID"]) >= 8


def test_gunicorn_serves_the_fast_path_in_front_of_django() -> None:
    assert isinstance(application, FastPath) and application.app is django_application


ENTRIES = "/v1/boards/global/entries"


@pytest.mark.parametrize("path", ["/v1/leaderboard", ENTRIES])
@pytest.mark.parametrize("query", ["", "limit=3", "limit=100", "limit=100000", "limit=007", "limit=0"])
def test_a_plain_read_is_answered_as_django_answers_it(
    board: list[User], fast: FastPath, django_app: Counting, query: str, path: str
) -> None:
    answer = call(fast, query, path=path)
    assert django_app.calls == 0  # answered by the fast path itself
    same_answer(answer, call(django_application, query, path=path))
    if query == "limit=0":
        assert answer[0] == 400 and b'"invalid_limit"' in answer[2]
    else:
        assert answer[0] == 200 and b'"username":"fp3"' in answer[2]


def test_an_unknown_board_is_djangos_404(board: list[User], fast: FastPath, django_app: Counting) -> None:
    answer = call(fast, path="/v1/boards/no-such-board/entries")
    assert django_app.calls == 0
    same_answer(answer, call(django_application, path="/v1/boards/no-such-board/entries"))
    assert answer[0] == 404 and b'"unknown_board"' in answer[2]


@pytest.mark.parametrize(
    "meta",
    [
        {"HTTP_ACCEPT": "*/*"},
        {"HTTP_ACCEPT": "application/json"},
        {"HTTP_X_REQUEST_ID": "client-request-0001"},
    ],
)
def test_the_usual_headers_of_a_client_are_served_fast(
    board: list[User], fast: FastPath, django_app: Counting, meta: dict[str, Any]
) -> None:
    answer = call(fast, **meta)
    assert django_app.calls == 0
    same_answer(answer, call(django_application, **meta))
    if "HTTP_X_REQUEST_ID" in meta:
        assert answer[1]["X-Request-ID"] == "client-request-0001"


@override_settings(SECURE_PROXY_SSL_HEADER=("HTTP_X_FORWARDED_PROTO", "https"), SECURE_HSTS_SECONDS=3600)
def test_an_https_read_gets_the_headers_django_gives_https(board: list[User], fast: FastPath) -> None:
    django = WSGIHandler()  # Django's middleware read their settings when they are built: now
    secure = call(fast, HTTP_X_FORWARDED_PROTO="https")
    plain = call(fast, HTTP_X_FORWARDED_PROTO="http")
    assert fast.app.calls == 0  # type: ignore[attr-defined]
    same_answer(secure, call(django, HTTP_X_FORWARDED_PROTO="https"))
    same_answer(plain, call(django, HTTP_X_FORWARDED_PROTO="http"))
    assert secure[1]["Strict-Transport-Security"].startswith("max-age=3600")
    assert "Strict-Transport-Security" not in plain[1]


def test_a_changed_setting_changes_the_fast_answer_too(board: list[User], fast: FastPath) -> None:
    call(fast)  # the headers worked out for the settings of now
    with override_settings(X_FRAME_OPTIONS="SAMEORIGIN", SECURE_REFERRER_POLICY="no-referrer"):
        answer = call(fast)
        same_answer(answer, call(WSGIHandler()))
    assert answer[1]["X-Frame-Options"] == "SAMEORIGIN" and answer[1]["Referrer-Policy"] == "no-referrer"


@pytest.mark.parametrize(
    ("query", "meta", "status"),
    [
        ("", {"HTTP_AUTHORIZATION": "Bearer not-a-jwt"}, 401),  # DRF authenticates any bearer token
        ("", {"HTTP_ACCEPT": "text/html"}, 406),
        ("", {"HTTP_HOST": "evil.example"}, 400),
        ("limit=abc", {}, 400),
        ("limit=3&limit=4", {}, 200),
        ("format=json", {}, 200),
        ("", {"CONTENT_LENGTH": "5"}, 200),
        ("", {"REQUEST_METHOD": "HEAD"}, 200),
        ("", {"REQUEST_METHOD": "POST"}, 405),
    ],
)
def test_anything_else_goes_to_django(
    board: list[User], fast: FastPath, django_app: Counting, query: str, meta: dict[str, Any], status: int
) -> None:
    answer = call(fast, query, **meta)
    assert django_app.calls == 1
    assert answer[0] == status, answer[2]
    assert answer[1]["Content-Type"].startswith(("application/json", "text/html"))


@pytest.mark.parametrize(
    ("path", "query", "status"),
    [
        ("/v1/boards", "", 200),
        ("/v1/leaderboard/", "", 404),
        (ENTRIES, "period=current", 200),
        (ENTRIES, "period=1999-01-01", 400),
        (ENTRIES, "cursor=abc", 400),
        ("/v1/boards/global/entries/", "", 404),
        ("/v1/boards/gl%20obal/entries", "", 404),
        ("/v1/boards//entries", "", 404),
    ],
)
def test_other_paths_and_queries_go_to_django(
    board: list[User], fast: FastPath, django_app: Counting, path: str, query: str, status: int
) -> None:
    answer = call(fast, query, path=path)
    assert django_app.calls == 1
    assert answer[0] == status, answer[2]


@pytest.mark.parametrize(
    "setting",
    [{"FAST_PATH": False}, {"LEADERBOARD_REQUIRE_AUTH": True}, {"SECURE_SSL_REDIRECT": True}, {"PREPEND_WWW": True}],
)
def test_settings_that_change_the_answer_turn_the_fast_path_off(board: list[User], setting: dict[str, Any]) -> None:
    with override_settings(**setting):
        django = Counting(WSGIHandler())  # Django's middleware read their settings when they are built: now
        answer = call(FastPath(django))
        same_answer(answer, call(WSGIHandler()))
    assert django.calls == 1
    if "SECURE_SSL_REDIRECT" in setting:
        assert answer[0] == 301


@override_settings(RATE_LIMIT_ENABLED=True, RATE_LIMIT_IP_PER_MINUTE=4)
def test_the_per_ip_limit_counts_fast_and_django_reads_alike(
    board: list[User], fast: FastPath, django_app: Counting, caplog: pytest.LogCaptureFixture
) -> None:
    assert call(fast)[0] == 200
    assert call(django_application)[0] == 200
    assert call(fast)[0] == 200
    assert call(django_application)[0] == 200  # the fourth read of this address in the window
    with caplog.at_level(logging.WARNING, logger="scoreboard.security"):
        refused = call(fast, HTTP_X_REQUEST_ID="over-the-limit-1")
    lines = [r for r in caplog.records if getattr(r, "event", None) == "request_blocked"]
    assert django_app.calls == 0
    same_answer(refused, call(django_application))  # Django's own 429 of the sixth
    assert refused[0] == 429 and b'"ip_rate_limited"' in refused[2]
    assert 1 <= int(refused[1]["Retry-After"]) <= 60
    assert len(lines) == 1 and lines[0].status == 429 and lines[0].code == "ip_rate_limited"  # type: ignore[attr-defined]
    assert lines[0].client_ip == "127.0.0.1" and lines[0].request_id == "over-the-limit-1"  # type: ignore[attr-defined]


def test_a_refused_query_still_counts_against_the_limit(board: list[User], fast: FastPath) -> None:
    with override_settings(RATE_LIMIT_ENABLED=True, RATE_LIMIT_IP_PER_MINUTE=2):
        assert call(fast, "limit=0")[0] == 400  # refused before the index read: counted on the way out
        assert call(fast, "limit=0")[0] == 400
        third = call(fast, "limit=0")
        django = call(django_application, "limit=0")
    assert third[0] == django[0] == 429 and third[2] == django[2] and b'"ip_rate_limited"' in third[2]
    # Through Django this 429 comes from the per-IP middleware, outside the security middleware: it has
    # none of their headers (nor Content-Length). The fast path's answer has them, as all its answers.
    assert {k: v for k, v in django[1].items() if k != "X-Request-ID"}.items() <= third[1].items()
    assert third[1]["X-Content-Type-Options"] == "nosniff" and third[1]["Content-Length"] == str(len(third[2]))


def requests_counted(route: str, status: int) -> float:
    labels = {"method": "GET", "route": route, "status": str(status)}
    return REGISTRY.get_sample_value("scoreboard_http_requests_total", labels) or 0.0


@pytest.mark.parametrize(
    ("path", "route"),
    [("/v1/leaderboard", "/v1/leaderboard"), (ENTRIES, "/v1/boards/<slug:board_id>/entries")],
)
def test_a_fast_read_is_counted_and_timed_as_djangos(board: list[User], fast: FastPath, path: str, route: str) -> None:
    before = requests_counted(route, 200)
    latency = {"method": "GET", "route": route}
    timed = REGISTRY.get_sample_value("scoreboard_http_request_duration_seconds_count", latency) or 0.0
    call(fast, path=path)
    call(django_application, path=path)
    assert requests_counted(route, 200) == before + 2
    assert REGISTRY.get_sample_value("scoreboard_http_request_duration_seconds_count", latency) == timed + 2


@pytest.mark.django_db(transaction=True)
def test_with_redis_down_the_fast_path_reads_the_database(
    make_player: Callable[..., User], client_for: Any, mint: Any, fast: FastPath, django_app: Counting
) -> None:
    from tests.scores.test_player_card import redis_dead

    ann = make_player(username="ann")
    with override_settings(**UNTHROTTLED):
        assert submit(client_for(ann), mint(ann, increment=40)).status_code == 200
    # Limits off: with them on and their store known to be down, they are counted the separate way
    # (the per-IP middleware, in this process or not at all, as configured), so reads go to Django.
    with redis_dead(), override_settings(RATE_LIMIT_ENABLED=False):
        answer = call(fast)
        entries = call(fast, path=ENTRIES)
        assert django_app.calls == 0  # both served by the fast path, from the database
        same_answer(answer, call(django_application))
        same_answer(entries, call(django_application, path=ENTRIES))
    assert answer[0] == entries[0] == 200
    assert b'"username":"ann","score":40' in answer[2] and b'"username":"ann","score":40' in entries[2]


@pytest.mark.postgres
@pytest.mark.django_db(databases=["default", REPLICA])
@pytest.mark.usefixtures("replica_db", "routed")
def test_with_a_replica_the_fast_path_reads_where_django_would(fast: FastPath) -> None:
    """Redis down, a replica routed: the board comes from the replica, as through Django."""
    from tests.scores.test_player_card import redis_dead

    ghost = User.objects.using(REPLICA).create(username="only-on-the-replica", email="ghost@example.com")
    BoardEntry.objects.using(REPLICA).create(
        board_id="global",
        period_key="all",
        user=ghost,
        score=5,
        sort_value=-5,
        version=1,
        reached_at=ghost.date_joined,
        updated_at=ghost.date_joined,
    )
    with redis_dead(), override_settings(RATE_LIMIT_ENABLED=False):
        answer = call(fast)
        assert fast.app.calls == 0  # type: ignore[attr-defined]
        same_answer(answer, call(WSGIHandler()))  # Django's, with the routing middleware of ``routed``
    assert answer[0] == 200 and b"only-on-the-replica" in answer[2]
