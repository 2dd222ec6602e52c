"""The WSGI fast path: the hot board reads and the usual score update answered before Django's
request machinery.

``GET /v1/leaderboard`` and ``GET /v1/boards/{board}/entries`` are the most read URLs of the service
(every game client polls the top; the spectator page and the widgets too), and on an unchanged board
their own work is one Redis round trip (the per-IP hit and a version check,
``scores.selectors.board_page``) and a copy of bytes kept with the page. Through Django the read cost
about three times the bare DRF view (``python -m bench.profile_read``): Django's handler (a
``WSGIRequest``, the request signals, URL resolution), eleven middleware and DRF's dispatch cost
more than the read itself.

Here a plain anonymous read (``GET``, no query or ``limit=<digits>`` only, so the current period's
first page; no ``Authorization``; an ``Accept`` that takes JSON; an allowed ``Host``; no body; boards
open to anonymous readers) calls the view's own service function (``scores.apis.leaderboard_top_body``,
``board_entries_body``) and answers with the same status, body and headers Django would: the security
headers are computed once per process by Django's own middleware (``SecurityMiddleware``,
``XFrameOptionsMiddleware``) on an empty response, so they follow the settings exactly; the request
id, the metrics (same route labels), the per-IP limit (counted in the read's round trip, 429 +
``Retry-After`` when over), the refusal's security line and the JSON error envelope are the same code
the middleware run. Any other request (a cursor, a period, a token, another method...), and every
request while ``FAST_PATH`` is off, goes to Django unchanged. ``tests/scoreboard/test_fastpath.py``
sends the same requests both ways and compares status, headers and body.

**The score update** (``POST /v1/scores/update``, issue #12): through Django an update's own work (two
Redis calls, one PostgreSQL statement, the checks) was about three quarters of its CPU; Django's
handler, the middleware and DRF's dispatch the rest (``python -m bench.profile_update --instructions``:
4.37 million instructions per three-board update through Django, 3.68 million here). A usual update
is served here: JSON of at most the body limit, an ``Accept`` that takes JSON, an allowed ``Host``, a
bearer token of ours that verifies, grants ``update:scores`` and names a player the card will vouch
for (PostgreSQL and Redis up, limits on and countable in the pre-write call), and a body the view's
own hand check takes (``scores.apis.submit_input_fast``). All of that is decided before anything is
counted or written; anything else (no or a bad token, an external issuer's token, a body for the
serializer to refuse, another content type, limits off, the embedded default...) goes to Django with
the body it sent (re-readable), so every such refusal is still Django's and DRF's own answer. From
there it runs what the view runs, with the same objects: the per-IP, per-player and global hits on a
``PendingLimits`` (as the middleware and the throttle leave them), the player's ``CardCheck`` and
``SessionCheck``, ``scores.services.score_submit``. A refusal from the service (replay 409, action
token 401, a limit's 429, a disabled player's 403, the fraud engine's 429...) is answered by the
view's own DRF exception handling and ``finalize_response``; any other exception by
``ApiExceptionMiddleware`` (JSON 500, or 503 for the database); limits not counted yet are counted as
the per-IP middleware counts them. ``tests/scoreboard/test_fastpath_update.py`` sends the same
updates both ways.

What the fast path does not do: send Django's ``request_started``/``request_finished`` signals (it
closes old database connections itself, at the end of a read, at both ends of an update, as those
signals would; nothing else of ours listens).
One answer differs from Django's on purpose: a read refused by the per-IP limit after a bad query
carries the security headers and Content-Length (through Django that 429 comes from the per-IP
middleware, which sits outside the security middleware).
"""

from __future__ import annotations

import dataclasses
import functools
import io
import logging
import re
import time
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any

import orjson
from django.conf import settings
from django.core.signals import setting_changed
from django.db import DatabaseError, close_old_connections
from django.http import HttpRequest, HttpResponse
from django.http.request import split_domain_port, validate_host
from django.middleware.clickjacking import XFrameOptionsMiddleware
from django.middleware.security import SecurityMiddleware
from rest_framework.renderers import JSONRenderer

from scoreboard import logging as sb_logging
from scoreboard import replica
from scoreboard.api import JSON_CONTENT_TYPES, JSON_ONLY_ACCEPTS, ok_body
from scoreboard.errors import ApiError, ServiceUnavailable, TooManyRequests, error_body, error_response
from scoreboard.metrics import request_observe
from scoreboard.middleware import ApiExceptionMiddleware
from scoreboard.net import client_ip
from scoreboard.ratelimit import (
    BOARDS_PREFIX,
    ENTRIES_SUFFIX,
    LEADERBOARD_PATH,
    PENDING_ATTRIBUTE,
    SCORE_UPDATE_PATH,
    PendingLimits,
    counters_mergeable,
)
from scoreboard.request_id import refusal_log

logger = logging.getLogger(__name__)

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

_REQUEST_ID_KEY = "HTTP_" + sb_logging.REQUEST_ID_HEADER.upper().replace("-", "_")
_LIMIT_QUERY = re.compile(r"(?:limit=([0-9]{1,6}))?")
# A board's entries (Django's ``slug`` converter), the current period's first page.
_ENTRIES_PATH = re.compile(re.escape(BOARDS_PREFIX) + r"([-a-zA-Z0-9_]+)" + re.escape(ENTRIES_SUFFIX))
# The route labels Django's URL resolution gives the views (``scoreboard.metrics.route_of``).
LEADERBOARD_ROUTE = LEADERBOARD_PATH
ENTRIES_ROUTE = BOARDS_PREFIX + "<slug:board_id>" + ENTRIES_SUFFIX
# The view's own headers: DRF's ``Allow`` of a GET-only APIView, then the response's content type.
_VIEW_HEADERS = (("Allow", "GET, HEAD, OPTIONS"),)
_RENDERER = JSONRenderer()  # DRF's, as the view's errors are rendered


@functools.lru_cache(maxsize=256)
def _host_allowed(host: str, allowed: tuple[str, ...], debug: bool) -> bool:
    """``HttpRequest.get_host``'s check (Django's own functions), remembered per Host header."""
    if debug and not allowed:
        allowed = (".localhost", "127.0.0.1", "[::1]")
    domain, _ = split_domain_port(host)
    return bool(domain) and validate_host(domain, allowed)


def _middleware_headers(*, secure: bool) -> list[tuple[str, str]]:
    """The headers Django's security and clickjacking middleware add to a response of this kind of
    request (HTTPS or not), computed by those middleware themselves on an empty response."""
    request = HttpRequest()
    request.method = "GET"
    request.path = request.path_info = LEADERBOARD_PATH
    if secure:
        request.META["wsgi.url_scheme"] = "https"
        request._get_scheme = lambda: "https"  # type: ignore[attr-defined]
    empty = HttpResponse()
    response = HttpResponse()
    for middleware in (SecurityMiddleware(lambda r: empty), XFrameOptionsMiddleware(lambda r: empty)):
        response = middleware.process_response(request, response)
    return [(k, v) for k, v in response.items() if k not in empty.headers]


@dataclasses.dataclass(frozen=True, slots=True)
class _Read:
    path: str
    route: str
    url_name: str  # the view's URL name (scores/urls.py)
    board_id: str | None  # None: the leaderboard (the global board's top)
    raw_limit: str | None
    limits: PendingLimits | None


class FastPath:
    """Wraps Django's WSGI application; see the module's docstring."""

    def __init__(self, app: WSGIApp) -> None:
        self.app = app
        self._headers: dict[bool, list[tuple[str, str]]] = {}
        setting_changed.connect(self._settings_changed)

    def _settings_changed(self, **_: Any) -> None:
        self._headers.clear()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if environ.get("REQUEST_METHOD") != "GET":
            if path == SCORE_UPDATE_PATH and environ.get("REQUEST_METHOD") == "POST":
                return self._update(environ, start_response)
            return self.app(environ, start_response)
        if path == LEADERBOARD_PATH:
            board_id, route, name = None, LEADERBOARD_ROUTE, "leaderboard"
        elif path.startswith(BOARDS_PREFIX) and (entries := _ENTRIES_PATH.fullmatch(path)) is not None:
            board_id, route, name = entries.group(1), ENTRIES_ROUTE, "board-entries"
        else:
            return self.app(environ, start_response)
        query = _LIMIT_QUERY.fullmatch(environ.get("QUERY_STRING", ""))
        secure = self._secure(environ)
        if query is None or not self._plain(environ, secure):
            return self.app(environ, start_response)
        ip = client_ip(environ)
        limits = None
        if settings.RATE_LIMIT_ENABLED:
            if ip is None or counters_mergeable() is None:
                return self.app(environ, start_response)  # counted the separate way, by the middleware
            limits = PendingLimits(None, ip=ip)  # type: ignore[arg-type]  # never counts the player's limits
        read = _Read(path, route, name, board_id, query.group(1), limits)
        return self._serve(environ, start_response, read, secure)

    def _secure(self, environ: dict[str, Any]) -> bool:
        proxy = settings.SECURE_PROXY_SSL_HEADER
        if proxy:
            value = environ.get(proxy[0])
            if value is not None:
                return bool(value.split(",", 1)[0].strip() == proxy[1])
        return bool(environ.get("wsgi.url_scheme") == "https")

    def _plain(self, environ: dict[str, Any], secure: bool) -> bool:
        """A read the fast path answers exactly as Django would; anything else goes to Django."""
        if settings.LEADERBOARD_REQUIRE_AUTH or "HTTP_AUTHORIZATION" in environ:
            return False  # DRF authenticates a bearer token (401 when bad)
        if environ.get("CONTENT_LENGTH") not in (None, "", "0") or environ.get("HTTP_TRANSFER_ENCODING"):
            return False
        return self._usual(environ, secure)

    def _usual(self, environ: dict[str, Any], secure: bool) -> bool:
        """What every fast-path request needs: the fast path on, JSON accepted (other types are DRF's
        to negotiate), an allowed Host, and none of the settings that make Django's handler or
        middleware answer differently (redirects, a forwarded host, a script prefix, refused agents)."""
        if not settings.FAST_PATH or environ.get("HTTP_ACCEPT", "") not in JSON_ONLY_ACCEPTS:
            return False
        if settings.SECURE_SSL_REDIRECT and not secure:
            return False
        if settings.USE_X_FORWARDED_HOST or settings.FORCE_SCRIPT_NAME is not None:
            return False
        if settings.DISALLOWED_USER_AGENTS or settings.PREPEND_WWW:
            return False
        host = environ.get("HTTP_HOST")
        if not host:
            return False
        allowed = settings.ALLOWED_HOSTS
        return _host_allowed(host, allowed if type(allowed) is tuple else tuple(allowed), settings.DEBUG)

    def _serve(
        self, environ: dict[str, Any], start_response: Callable[..., Any], read: _Read, secure: bool
    ) -> Iterable[bytes]:
        started = time.perf_counter()
        request_id = sb_logging.clean_request_id(environ.get(_REQUEST_ID_KEY))
        token = sb_logging.set_request_id(request_id)
        kwargs = {} if read.board_id is None else {"board_id": read.board_id}
        reads = replica.reads_mark("GET", read.url_name, kwargs, environ)  # as ReplicaReadMiddleware
        try:
            target = ("GET", read.path, read.route)
            return self._respond(environ, start_response, self._answer(read), secure, request_id, target, started)
        finally:
            replica.reads_reset(reads)
            sb_logging.reset_request_id(token)

    def _answer(self, read: _Read) -> tuple[int, bytes, list[tuple[str, str]]]:
        """The view's answer (status, body, headers), errors as DRF's handler or, for an unexpected
        exception, ``ApiExceptionMiddleware`` renders them."""
        from scores.apis import board_entries_body, leaderboard_top_body  # the app registry is ready by now

        try:
            if read.board_id is None:
                body, _ = leaderboard_top_body(read.raw_limit, read.limits)
            else:
                body, _ = board_entries_body(
                    read.board_id, raw_limit=read.raw_limit, cursor=None, raw_period=None, limits=read.limits
                )
            return 200, body, [("Content-Type", "application/json"), *_VIEW_HEADERS]
        except ApiError as exc:
            return self._refused(exc, read.limits)
        except DatabaseError:
            logger.exception("database error while handling a request")
            return self._refused(ServiceUnavailable(), read.limits)
        except Exception:  # as ApiExceptionMiddleware: a JSON 500, never HTML
            logger.exception("unhandled error on %s", read.path)
            error = error_response(500, "internal_error", "Internal server error.")
            return 500, error.content, [("Content-Type", error["Content-Type"])]
        finally:
            # As Django's request_finished signal: a read served from the index touches no database,
            # but one served from it (Redis down) or a board looked up there may have.
            close_old_connections()

    def _refused(self, exc: ApiError, limits: PendingLimits | None) -> tuple[int, bytes, list[tuple[str, str]]]:
        if limits is not None and not limits.consumed:
            try:  # refused before its round trip: counted now, and a 429 when over (as the middleware)
                limits.flush()
            except TooManyRequests as over:
                # The per-IP middleware's own answer (through Django it lacks the security headers and
                # Content-Length: that middleware sits outside them; here it has them, as every answer).
                refusal = _error(over)
                return 429, refusal.content, [(k, v) for k, v in refusal.items() if k != "Content-Length"]
        headers = [("Content-Type", "application/json"), *_VIEW_HEADERS]
        if isinstance(exc, TooManyRequests):
            headers.append(("Retry-After", str(exc.retry_after)))
        return exc.status_code, _RENDERER.render(error_body(exc.code, str(exc.detail), exc.details)), headers

    def _respond(
        self,
        environ: dict[str, Any],
        start_response: Callable[..., Any],
        answer: tuple[int, bytes, list[tuple[str, str]]],
        secure: bool,
        request_id: str,
        target: tuple[str, str, str],
        started: float,
    ) -> Iterable[bytes]:
        """Send the view's answer as Django's middleware would finish it: Content-Length when it has
        none (CommonMiddleware), the security and clickjacking headers it has not set, the request
        id; then the refusal's security line and the metrics (``target``: method, path, route)."""
        status, body, headers = answer
        present = {name for name, _ in headers}
        if "Content-Length" not in present:
            headers.append(("Content-Length", str(len(body))))
        security = self._headers.get(secure) or self._headers.setdefault(secure, _middleware_headers(secure=secure))
        headers += [(name, value) for name, value in security if name not in present]
        headers.append((sb_logging.REQUEST_ID_HEADER, request_id))
        method, path, route = target
        code = None if status == 200 else _envelope_code(body)
        refusal_log(status, code, method, path, environ)
        request_observe(method, route, status, time.perf_counter() - started, lambda: code)
        start_response(f"{status} {HTTPStatus(status).phrase}", headers)
        return [body]

    # ------------------------------------------------------------------------------ score updates
    def _update(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        """``POST /v1/scores/update``: a usual update (see the module's docstring) is served here;
        anything else, decided before anything is counted or written, goes to Django."""
        secure = self._secure(environ)
        length = _usual_update_length(environ)
        if length is None or not self._usual(environ, secure):
            return self.app(environ, start_response)
        from accounts import cards  # the app registry is ready by now
        from scores.apis import submit_input_fast

        ip = client_ip(environ)
        if ip is None or not settings.RATE_LIMIT_ENABLED or counters_mergeable() is None or not cards.cards_usable():
            return self.app(environ, start_response)  # counted or looked up the separate way, by Django
        body = environ["wsgi.input"].read(length)
        environ["wsgi.input"] = io.BytesIO(body)  # Django reads the same bytes if it answers after all
        if len(body) != length:
            return self.app(environ, start_response)
        player = _player(environ)
        if player is None:
            return self.app(environ, start_response)
        try:
            fast = submit_input_fast(orjson.loads(body))
        except orjson.JSONDecodeError:
            fast = None
        if fast is None:  # every refusal of a body is the serializer's (through Django)
            return self.app(environ, start_response)
        return self._serve_update(environ, start_response, secure, ip, player, fast)

    def _serve_update(
        self,
        environ: dict[str, Any],
        start_response: Callable[..., Any],
        secure: bool,
        ip: str,
        player: tuple[Any, Any],
        fast: tuple[str, dict[str, str] | None],
    ) -> Iterable[bytes]:
        from django.core.handlers.wsgi import WSGIRequest

        from accounts import cards
        from accounts.authentication import SessionCheck, player_checked, token_epoch
        from scores import services
        from scores.apis import USER_AGENT_MAX_LENGTH

        started = time.perf_counter()
        close_old_connections()  # as Django's request_started signal
        request_id = sb_logging.clean_request_id(environ.get(_REQUEST_ID_KEY))
        token = sb_logging.set_request_id(request_id)
        try:
            request = WSGIRequest(environ)  # what the limits' separate count and an error answer read
            request.request_id = request_id  # type: ignore[attr-defined]  # as RequestIdMiddleware
            user, validated = player
            limits = PendingLimits(request, ip=ip)  # as the per-IP middleware, then the throttle
            setattr(request, PENDING_ATTRIBUTE, limits)
            limits.add_player(user_id=str(user.pk))
            context = services.RequestContext(
                ip_address=ip,
                user_agent=environ.get("HTTP_USER_AGENT", "")[:USER_AGENT_MAX_LENGTH],
                limits=limits,
                card=(
                    cards.CardCheck(user, epoch=token_epoch(validated), lookup=player_checked)
                    if cards.is_pending(user)
                    else None
                ),
                session=SessionCheck.of(validated),
            )
            action_token, metadata = fast
            try:
                result = services.score_submit(user=user, action_token=action_token, metadata=metadata, context=context)
            except Exception as exc:  # answered as DRF's handler, or the JSON 500/503
                status, body, headers = _update_refused(request, exc, user, validated, limits)
            else:
                status, body = 200, ok_body(result.as_dict())
                headers = [("Content-Type", "application/json"), *_update_view_headers()]
            target = ("POST", SCORE_UPDATE_PATH, _update_route())
            return self._respond(environ, start_response, (status, body, headers), secure, request_id, target, started)
        finally:
            sb_logging.reset_request_id(token)
            close_old_connections()  # as Django's request_finished signal


def _usual_update_length(environ: dict[str, Any]) -> int | None:
    """The declared length of a usual update's body (JSON, at most the body limit), or None."""
    if environ.get("CONTENT_TYPE", "").lower() not in JSON_CONTENT_TYPES or environ.get("HTTP_TRANSFER_ENCODING"):
        return None
    declared = environ.get("CONTENT_LENGTH", "")
    if not declared.isdigit() or not 0 < int(declared) <= settings.MAX_REQUEST_BODY_BYTES:
        return None  # no body, a bad length or a 413: BodySizeLimitMiddleware's answers
    return int(declared)


@functools.cache
def _authentication() -> Any:
    from accounts.authentication import ScopedJWTAuthentication

    return ScopedJWTAuthentication(cards=True)  # the score update view's own (scores.apis)


def _player(environ: dict[str, Any]) -> tuple[Any, Any] | None:
    """(player, token) as the view's authentication, permission and throttle take them, when the
    bearer token is one of ours, valid, grants ``update:scores`` and names a player by id (a card
    vouches for them in the pre-write call); None for anything else (Django answers: 401, 403...)."""
    from accounts import cards, oidc
    from accounts.authentication import token_scopes
    from accounts.scopes import SCOPE_UPDATE

    header = environ.get("HTTP_AUTHORIZATION")
    if not header:
        return None
    authentication = _authentication()
    try:
        raw = authentication.get_raw_token(header.encode("iso-8859-1"))
        if raw is None:
            return None
        validated = authentication.get_validated_token(raw)
        if isinstance(validated, oidc.ExternalAccessToken):
            return None  # its first use creates the player: Django's path does that
        user = authentication.get_user(validated)
    except Exception:  # every refusal of a token is Django's (the same code, its answer)
        return None
    if not cards.is_pending(user) or SCOPE_UPDATE not in token_scopes(validated):
        return None
    return user, validated


@functools.cache
def _update_view_headers() -> tuple[tuple[str, str], ...]:
    """DRF's ``finalize_response`` headers of the update view (``Allow``, and ``Vary`` if it had
    several renderers), from the view itself."""
    from scores.apis import ScoreSubmitApi

    return tuple(ScoreSubmitApi().default_response_headers.items())


@functools.cache
def _update_route() -> str:
    """The update's route label, as Django's URL resolution gives it (``scoreboard.metrics.route_of``)."""
    from django.urls import resolve

    route = resolve(SCORE_UPDATE_PATH).route
    return "/" + route if route else SCORE_UPDATE_PATH


def _update_refused(
    request: HttpRequest, exc: Exception, user: Any, validated: Any, limits: PendingLimits
) -> tuple[int, bytes, list[tuple[str, str]]]:
    """A refused update answered as through Django: DRF's exception handling and response headers
    for an API error (``APIView.handle_exception`` / ``finalize_response`` of the view itself),
    ``ApiExceptionMiddleware``'s JSON 500/503 for anything else, then the per-IP middleware's
    count of limits not counted yet (its 429 replaces a refusal)."""
    from scores.apis import ScoreSubmitApi

    view = ScoreSubmitApi()
    view.args, view.kwargs, view.format_kwarg = (), {}, None
    drf_request = view.initialize_request(request)
    drf_request.user, drf_request.auth = user, validated
    view.request, view.headers = drf_request, view.default_response_headers
    response: HttpResponse
    try:
        answer = view.finalize_response(drf_request, view.handle_exception(exc))
        answer.render()
        response = answer
    except Exception as unhandled:  # not an API error: the middleware's JSON answer
        refused = ApiExceptionMiddleware(_no_view).process_exception(request, unhandled)
        assert refused is not None  # always, under /v1/
        response = refused
    if not limits.consumed:
        try:
            limits.flush()
        except TooManyRequests as over:
            if response.status_code >= 400:
                response = _error(over)
    return response.status_code, response.content, list(response.items())


def _no_view(request: HttpRequest) -> HttpResponse:
    raise AssertionError("never called")


def _envelope_code(body: bytes) -> str | None:
    try:
        error = orjson.loads(body).get("error")
    except (orjson.JSONDecodeError, AttributeError):
        return None
    return str(error["code"]) if isinstance(error, dict) and error.get("code") else None


def _error(exc: ApiError) -> HttpResponse:
    """``error_response`` of ``exc``, as the middleware answer (``Retry-After`` with a 429)."""
    headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, TooManyRequests) else None
    return error_response(exc.status_code, exc.code, str(exc.detail), exc.details, headers=headers)
