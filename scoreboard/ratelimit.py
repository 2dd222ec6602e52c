"""Rate limits (DESIGN "Score update" step 2) on django-ratelimit's counters.

The counters live in the ``default`` cache: django-redis (shared by every process) when ``REDIS_URL``
is set, the local-memory cache in the embedded default (one process, so still exact). Windows are
django-ratelimit's fixed one-minute windows, each key with its own offset.

- **Per IP, the whole API** (``/v1/``): every request counts, rejected ones included, so the
  middleware sits before anything that can reject a request. Game servers' ``POST /v1/actions``
  (with ``X-API-Key``) are counted per IP on their own, larger budget. The IP is
  ``scoreboard.net.client_ip``: a client-sent ``X-Forwarded-For`` is only believed past hops listed
  in ``TRUSTED_PROXIES``, so spoofing it does not buy a new quota. IPv6 clients are counted per /64
  (one subscriber's usual allocation).
- **Per player** and **global**: score-update attempts that passed authentication, checked by
  ``ScoreUpdateRateLimit`` (a DRF throttle, so it runs after the JWT and scope checks and before the
  body is parsed).

Every refusal is 429 in the JSON envelope with ``Retry-After`` (the seconds until the window ends).
We count with ``get_usage`` instead of the ``@ratelimit`` decorator: the decorator raises
``Ratelimited``, a ``PermissionDenied`` that DRF would answer with 403 and no ``Retry-After``.

**When the counter store (Redis) is down**, ``RATE_LIMIT_REDIS_DOWN`` decides:

- ``local`` (default): every limit falls back to counters kept in this process (same fixed
  one-minute windows). Score updates still commit, as DESIGN asks ("if Redis is unreachable the
  update still commits"), and no player or address goes unlimited: each process enforces the full
  limit on its own, so with N processes behind a balancer the effective ceiling is at most N times
  the setting until Redis returns.
- ``closed``: score updates are refused with 503 + ``Retry-After`` (nothing applied; the token stays
  usable for its 5-minute window). For operators who prefer refusing writes to approximate limits.
- ``open``: score updates go through unlimited (the fraud engine still runs, from PostgreSQL).

After a failure the store is not tried again for ``BREAKER_SECONDS``, so an outage does not add a
socket timeout to every request.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import logging
import threading
import time
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.cache import caches
from django.http import HttpRequest, HttpResponse
from django_ratelimit import core as ratelimit_core
from django_ratelimit.core import get_usage
from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle
from rest_framework.views import APIView

from scoreboard import logging as sb_logging
from scoreboard import metrics
from scoreboard.errors import TooManyRequests, error_response
from scoreboard.middleware import API_PREFIX
from scoreboard.net import client_ip
from scoreboard.ratelimit_cache import RateLimitCache
from scoreboard.redis import REDIS_ERRORS

logger = logging.getLogger(__name__)
security_log = logging.getLogger("scoreboard.security")

WINDOW_SECONDS = 60
BREAKER_SECONDS = 2.0
IPV6_PREFIX = 64
FAIL_LOCAL = "local"
FAIL_CLOSED = "closed"
FAIL_OPEN = "open"

SCOPE_IP = "ip"
SCOPE_GAME_SERVER = "game_server"
SCOPE_USER = "user"
SCOPE_GLOBAL = "global"
SCOPE_WEBSOCKET = "ws"
SCOPE_ADMIN_LOGIN = "admin_login"
# Password guessing against the admin: login attempts (POST) per client address and minute.
ADMIN_LOGIN_PATH = "/admin/login/"
MAX_API_KEY_LENGTH = 200
# Game servers mint action tokens for all their players from a few addresses; their requests carry an
# X-API-Key and get their own, larger per-IP budget (an invalid key is still refused by the view).
GAME_SERVER_PATH = API_PREFIX + "actions"


class RateLimiterUnavailable(TooManyRequests):
    """503 + Retry-After: the counters cannot be read, and score updates fail closed."""

    status_code: int = 503
    default_code = "rate_limiter_unavailable"
    default_detail = "Score updates are paused: the rate limiter is unavailable. Nothing was applied; retry later."


@dataclass(frozen=True)
class Usage:
    scope: str
    limit: int
    count: int
    retry_after: int

    @property
    def exceeded(self) -> bool:
        return self.count > self.limit


class _Breaker:
    """Remembers a recent failure of the counter store so we do not wait on it again at once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open_until = 0.0

    def is_open(self) -> bool:
        return time.monotonic() < self._open_until

    def trip(self) -> None:
        with self._lock:
            self._open_until = time.monotonic() + BREAKER_SECONDS

    def reset(self) -> None:
        with self._lock:
            self._open_until = 0.0


breaker = _Breaker()


class _StoreDown(Exception):
    pass


def _now() -> float:
    return time.time()


class _LocalCounters:
    """Fixed one-minute windows held in this process: the fallback while Redis is down."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._window = -1
        self._counts: dict[tuple[str, str], int] = {}

    def hit(self, *, scope: str, value: str, limit: int) -> Usage:
        now = _now()
        window = int(now // WINDOW_SECONDS)
        with self._lock:
            if window != self._window:  # a new window: forget the old one (bounded memory)
                self._window, self._counts = window, {}
            count = self._counts.get((scope, value), 0) + 1
            self._counts[(scope, value)] = count
        return Usage(scope=scope, limit=limit, count=count, retry_after=WINDOW_SECONDS - int(now % WINDOW_SECONDS))

    def reset(self) -> None:
        with self._lock:
            self._window, self._counts = -1, {}


local_counters = _LocalCounters()


def _count_or_local(request: HttpRequest, *, scope: str, value: str, limit: int) -> Usage:
    """Count in the shared store; while it is down, in this process when the policy is ``local``."""
    try:
        return _count(request, scope=scope, value=value, limit=limit)
    except _StoreDown:
        if settings.RATE_LIMIT_REDIS_DOWN != FAIL_LOCAL:
            raise
        return local_counters.hit(scope=scope, value=value, limit=limit)


def _count(request: HttpRequest, *, scope: str, value: str, limit: int) -> Usage:
    """Count one hit against ``scope``/``value``; raises _StoreDown when the counter cannot be read."""
    if breaker.is_open():
        raise _StoreDown
    key: Callable[[str, Any], str] = lambda _group, _request: value  # noqa: E731
    try:
        usage = get_usage(request, group=f"sb:{scope}", key=key, rate=(limit, WINDOW_SECONDS), increment=True)
    except REDIS_ERRORS as exc:
        breaker.trip()
        logger.warning("rate-limit counters unavailable (%s)", type(exc).__name__)
        raise _StoreDown from exc
    if usage is None:  # RATELIMIT_ENABLE is off
        return Usage(scope=scope, limit=limit, count=0, retry_after=0)
    if usage["time_left"] < 0:  # django-ratelimit's "could not read or write the counter"
        breaker.trip()
        raise _StoreDown
    # The window still holds at its last second (time_left == 0), so the next one starts a second later.
    return Usage(scope=scope, limit=limit, count=int(usage["count"]), retry_after=int(usage["time_left"]) + 1)


@functools.lru_cache(maxsize=4096)
def ip_key(ip: str) -> str:
    address = ipaddress.ip_address(ip)
    if address.version == 6:
        return str(ipaddress.ip_network(f"{ip}/{IPV6_PREFIX}", strict=False).network_address) + f"/{IPV6_PREFIX}"
    return str(address)


_MESSAGES = {
    SCOPE_IP: "Too many requests from this address; slow down.",
    SCOPE_GAME_SERVER: "Too many action-token requests from this game server address; slow down.",
    SCOPE_USER: "Too many score updates from this player; slow down.",
    SCOPE_GLOBAL: "The service is receiving too many score updates; retry shortly.",
    SCOPE_WEBSOCKET: "Too many WebSocket connections opened from this address; slow down.",
    SCOPE_ADMIN_LOGIN: "Too many login attempts from this address; wait a minute.",
}


def _refusal(usage: Usage) -> TooManyRequests:
    security_log.info("rate limit %s exceeded (limit %d/min)", usage.scope, usage.limit)
    metrics.RATE_LIMIT_TRIGGERS.labels(scope=usage.scope).inc()
    return TooManyRequests(
        _MESSAGES[usage.scope],
        code=f"{usage.scope}_rate_limited",
        retry_after=usage.retry_after,
        details={"scope": usage.scope, "limit": usage.limit, "window_seconds": WINDOW_SECONDS},
    )


def _counters_chained() -> RateLimitCache | None:
    """The shared counter store when it can count several limits in one round trip."""
    if not getattr(settings, "RATELIMIT_ENABLE", True) or breaker.is_open():
        return None
    cache = caches[getattr(settings, "RATELIMIT_USE_CACHE", "default")]
    return cache if isinstance(cache, RateLimitCache) else None


@functools.lru_cache(maxsize=8192)
def _chain_key(scope: str, value: str, window: int, limit: int, prefix: object, algorithm: object) -> str:
    """django-ratelimit's cache key of one counter, computed once per window (a hash per counter;
    ``prefix`` and ``algorithm``, the settings it depends on, are part of what is remembered)."""
    return ratelimit_core._make_cache_key(f"sb:{scope}", window, (limit, WINDOW_SECONDS), value, ratelimit_core.ALL)


def _chain_keys(hits: list[tuple[str, str, int]]) -> tuple[list[str], list[int]]:
    """django-ratelimit's cache keys and window ends of ``hits`` (scope, value, limit)."""
    prefix = getattr(settings, "RATELIMIT_CACHE_PREFIX", None)
    algorithm = getattr(settings, "RATELIMIT_HASH_ALGORITHM", None)
    keys, windows = [], []
    for scope, value, limit in hits:
        window = ratelimit_core._get_window(value, WINDOW_SECONDS)
        keys.append(_chain_key(scope, value, window, limit, prefix, algorithm))
        windows.append(window)
    return keys, windows


def _usages(hits: list[tuple[str, str, int]], windows: list[int], counts: list[int]) -> list[Usage]:
    now = int(_now())  # django-ratelimit's clock (tests move both)
    return [
        Usage(scope=scope, limit=limit, count=count, retry_after=window - now + 1)
        for (scope, _value, limit), window, count in zip(hits, windows, counts, strict=False)
    ]


def _count_chain(cache: RateLimitCache, hits: list[tuple[str, str, int]]) -> list[Usage]:
    """Count ``hits`` (scope, value, limit) in order in ONE round trip, with django-ratelimit's keys
    and fixed windows (the same counters ``_count`` reads); stops after the first one over its limit.
    Raises _StoreDown when the counters cannot be read."""
    keys, windows = _chain_keys(hits)
    try:
        counts = cache.hit_chain(
            keys, [limit for _, _, limit in hits], WINDOW_SECONDS + ratelimit_core.EXPIRATION_FUDGE
        )
    except REDIS_ERRORS as exc:
        breaker.trip()
        logger.warning("rate-limit counters unavailable (%s)", type(exc).__name__)
        raise _StoreDown from exc
    return _usages(hits, windows, counts)


def score_update_limits_check(request: HttpRequest, *, user_id: str) -> None:
    """Count a score-update attempt against the player's and the global limit; 429 when over either.

    The player's limit is counted first, so one noisy player cannot use up the global quota. With
    the Redis counter store both are counted in one round trip (``_count_chain``).
    """
    if not settings.RATE_LIMIT_ENABLED:
        return
    hits = [
        (SCOPE_USER, user_id, settings.RATE_LIMIT_USER_PER_MINUTE),
        (SCOPE_GLOBAL, "all", settings.RATE_LIMIT_GLOBAL_PER_MINUTE),
    ]
    try:
        chained = _counters_chained()
        if chained is not None:
            with contextlib.suppress(_StoreDown):  # down: the loop below falls back as configured
                for usage in _count_chain(chained, hits):
                    if usage.exceeded:
                        raise _refusal(usage)
                return
        for scope, value, limit in hits:
            usage = _count_or_local(request, scope=scope, value=value, limit=limit)
            if usage.exceeded:
                raise _refusal(usage)
    except _StoreDown:
        if settings.RATE_LIMIT_REDIS_DOWN == FAIL_OPEN:
            return
        raise RateLimiterUnavailable(retry_after=WINDOW_SECONDS // 4) from None


class ScoreUpdateRateLimit(BaseThrottle):
    """DRF throttle for ScoreSubmitApi: runs after authentication and permissions, before the body."""

    def allow_request(self, request: Request, view: APIView) -> bool:
        user = request.user
        if user is None or getattr(user, "pk", None) is None:
            return True  # the permission check already refused it
        pending = pending_limits(request._request)
        if pending is not None:  # counted later, in the update's one pre-write Redis call
            pending.add_player(user_id=str(user.pk))
            return True
        score_update_limits_check(request._request, user_id=str(user.pk))
        return True


# ---------------------------------------------------------------------------------------------
# The score update's limits, counted in its one pre-write Redis call
# ---------------------------------------------------------------------------------------------
SCORE_UPDATE_PATH = API_PREFIX + "scores/update"
LEADERBOARD_PATH = API_PREFIX + "leaderboard"
# The requests whose limits are counted inside the Redis call that does their work.
DEFERRED_PATHS = frozenset({("POST", SCORE_UPDATE_PATH), ("GET", LEADERBOARD_PATH)})
BOARDS_PREFIX = API_PREFIX + "boards/"
ENTRIES_SUFFIX = "/entries"  # GET /v1/boards/{board}/entries: counted in its index read too


def _deferred_request(method: str, path: str) -> bool:
    if (method, path) in DEFERRED_PATHS:
        return True
    return method == "GET" and path.startswith(BOARDS_PREFIX) and path.endswith(ENTRIES_SUFFIX)


PENDING_ATTRIBUTE = "sb_pending_limits"


def counters_mergeable() -> RateLimitCache | None:
    """The counter store, when a score update may count its limits inside its pre-write Redis script:
    the counters live in the Redis every other key of that script lives in (``REDIS_URL``), the store
    is not known to be down, and limits are on."""
    if not settings.RATE_LIMIT_ENABLED or not settings.REDIS_URL:
        return None
    cache = _counters_chained()
    if cache is None or cache.location != settings.REDIS_URL:
        return None
    return cache


class PendingLimits:
    """A score update's per-IP, per-player and global hits (a leaderboard read's per-IP hit), not
    counted yet.

    The per-IP middleware and the throttle add their hits here instead of counting them at once; the
    fraud engine's pre-write script counts them first, in the same call (``counters`` / ``settle``),
    in the same order (IP, player, global), with the same keys, windows and 429 + Retry-After as the
    separate checks. A request that never gets that far (refused by authentication, the body check,
    the action token...) has them counted on its way out (``flush``): every limit still counts
    every attempt it counted before, and a request over a limit is still answered 429.
    """

    def __init__(self, request: HttpRequest, *, ip: str) -> None:
        self.request = request
        self.hits: list[tuple[str, str, int]] = [(SCOPE_IP, ip_key(ip), settings.RATE_LIMIT_IP_PER_MINUTE)]
        self.consumed = False
        self._windows: list[int] = []

    def add_player(self, *, user_id: str) -> None:
        self.hits += [
            (SCOPE_USER, user_id, settings.RATE_LIMIT_USER_PER_MINUTE),
            (SCOPE_GLOBAL, "all", settings.RATE_LIMIT_GLOBAL_PER_MINUTE),
        ]

    def player_drop(self) -> None:
        """Authentication refused the player after all (``accounts.cards``): their attempt counts
        against the per-IP limit only, as a request refused by authentication always did."""
        if not self.consumed:
            del self.hits[1:]

    def counters(self) -> tuple[list[str], list[int], int] | None:
        """(Redis keys, limits, expiry seconds) for a script to count (``with_counters``), or None when
        they cannot be counted there (already counted, or the store changed): then ``flush``."""
        cache = None if self.consumed else counters_mergeable()
        if cache is None:
            return None
        keys, self._windows = _chain_keys(self.hits)
        return (
            cache.full_keys(keys),
            [limit for _, _, limit in self.hits],
            WINDOW_SECONDS + ratelimit_core.EXPIRATION_FUDGE,
        )

    def settle(self, counts: list[int]) -> None:
        """The counts the script returned: 429 (as the separate checks answer) when one is over."""
        self.consumed = True
        for usage in _usages(self.hits, self._windows, [int(c) for c in counts]):
            if usage.exceeded:
                raise _refusal(usage)

    def flush(self) -> None:
        """Count the hits the separate way (the counter store's own round trip, or this process's
        counters while it is down, as configured); raises the refusal of the first one over."""
        if self.consumed:
            return
        self.consumed = True
        scope, value, limit = self.hits[0]
        try:
            usage = _count_or_local(self.request, scope=scope, value=value, limit=limit)
        except _StoreDown:
            usage = None  # policy "closed"/"open" is decided by the player's limits below
        if usage is not None and usage.exceeded:
            raise _refusal(usage)
        if len(self.hits) > 1:
            score_update_limits_check(self.request, user_id=self.hits[1][1])


def pending_limits(request: HttpRequest) -> PendingLimits | None:
    pending: PendingLimits | None = getattr(request, PENDING_ATTRIBUTE, None)
    return pending


_warned_no_address = threading.Event()


def _warn_no_client_address() -> None:
    """Once per process: a request without a client address (e.g. gunicorn bound to a unix socket
    without a trusted proxy header) cannot be limited per IP, and the IP fraud rules see nothing."""
    if not _warned_no_address.is_set():
        _warned_no_address.set()
        security_log.warning(
            "request without a client address: per-IP rate limits and IP fraud rules are off for such "
            "requests; bind the WSGI server to TCP behind the proxy, or list the proxy in TRUSTED_PROXIES"
        )


def _verified_game_server(request: HttpRequest) -> bool:
    """Only a key that verifies buys the game-server budget: any X-API-Key header used to."""
    raw_key = request.META.get(settings.API_KEY_HEADER, "")
    if not raw_key or len(raw_key) > MAX_API_KEY_LENGTH:
        return False
    from accounts.selectors import game_server_key_matching

    return game_server_key_matching(raw_key=raw_key) is not None


class IpRateLimitMiddleware:
    """Per-IP limit on every /v1/ request. Place it first: requests rejected later still count."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if _deferred_request(request.method or "", request.path) and counters_mergeable() is not None:
            return self._deferred(request)
        if settings.RATE_LIMIT_ENABLED and request.path.startswith(API_PREFIX):
            refused = self._check(request)
            if refused is not None:
                return refused
        elif settings.RATE_LIMIT_ENABLED and request.method == "POST" and request.path == ADMIN_LOGIN_PATH:
            refused = self._check(request, scope=SCOPE_ADMIN_LOGIN, limit=settings.RATE_LIMIT_ADMIN_LOGIN_PER_MINUTE)
            if refused is not None:
                return refused
        return self.get_response(request)

    def _deferred(self, request: HttpRequest) -> HttpResponse:
        """The per-IP hit of a score update joins its pre-write Redis call, the one of a board read
        (the leaderboard, a board's entries) the index read (``PendingLimits``)."""
        ip = client_ip(request.META)
        if ip is None:
            _warn_no_client_address()
            return self.get_response(request)
        pending = PendingLimits(request, ip=ip)
        setattr(request, PENDING_ATTRIBUTE, pending)
        response = self.get_response(request)
        if pending.consumed:
            return response
        try:  # refused before its pre-write call: counted now, and over a limit it is a 429 as before
            pending.flush()
        except TooManyRequests as exc:
            if response.status_code < 400:  # never hide what was done (the service counts before any write)
                return response
            return error_response(
                exc.status_code, exc.code, str(exc.detail), exc.details, headers={"Retry-After": str(exc.retry_after)}
            )
        return response

    def _check(self, request: HttpRequest, scope: str = SCOPE_IP, limit: int | None = None) -> HttpResponse | None:
        ip = client_ip(request.META)
        if ip is None:
            _warn_no_client_address()
            return None
        limit = settings.RATE_LIMIT_IP_PER_MINUTE if limit is None else limit
        if scope == SCOPE_IP and request.path == GAME_SERVER_PATH and _verified_game_server(request):
            scope, limit = SCOPE_GAME_SERVER, settings.RATE_LIMIT_GAME_SERVER_PER_MINUTE
        try:
            usage = _count_or_local(request, scope=scope, value=ip_key(ip), limit=limit)
        except _StoreDown:
            return None  # policy "closed"/"open": reads keep working; score updates are decided in the throttle
        if not usage.exceeded:
            return None
        exc = _refusal(usage)
        return error_response(
            exc.status_code,
            exc.code,
            str(exc.detail),
            exc.details,
            headers={"Retry-After": str(exc.retry_after)},
        )


def websocket_handshake_allowed(scope: MutableMapping[str, Any]) -> bool:
    """Count a WebSocket handshake against its address's per-minute budget (sync: Redis)."""
    if not settings.RATE_LIMIT_ENABLED:
        return True
    headers = dict(scope.get("headers") or [])
    client = scope.get("client") or (None, None)
    ip = client_ip({"REMOTE_ADDR": client[0], "HTTP_X_FORWARDED_FOR": headers.get(b"x-forwarded-for", b"").decode()})
    if ip is None:
        _warn_no_client_address()
        return True
    try:
        usage = _count_or_local(
            HttpRequest(), scope=SCOPE_WEBSOCKET, value=ip_key(ip), limit=settings.RATE_LIMIT_WS_HANDSHAKES_PER_MINUTE
        )
    except _StoreDown:
        return True  # policy "closed"/"open" is about score updates; watching the board stays possible
    if usage.exceeded:
        _refusal(usage)  # counted like every other refusal
        # The address the limit counted, as the ASGI tier believes it: what an operator checks when
        # someone forges X-Forwarded-For (only TRUSTED_PROXIES may set it).
        sb_logging.security_event(
            "websocket_rate_limited",
            f"refused a WebSocket handshake: over {usage.limit}/min for its address",
            status=403,
            code="websocket_rate_limited",
            path=scope.get("path"),
            client_ip=ip,
        )
        return False
    return True


def _handshake_allowed_in_thread(scope: MutableMapping[str, Any]) -> bool:
    with sb_logging.bound_request_id(scope.get("request_id")):  # the thread's context has none
        return websocket_handshake_allowed(scope)


class WebSocketHandshakeRateLimit:
    """ASGI middleware: a handshake over its address's budget is refused (HTTP 403) before routing."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "websocket":
            # In a worker thread (Redis is sync) and in that thread's own context: sync_to_async would
            # run it in a copy of the connection's context and copy the result back, and with it the
            # cache instance django's ``caches`` makes per context, kept for the socket's whole life
            # (about 1.5 KB a socket, bench/socket_memory.py). Here each worker thread keeps one.
            loop = asyncio.get_running_loop()
            if not await loop.run_in_executor(None, _handshake_allowed_in_thread, scope):
                message = await receive()  # websocket.connect
                if message.get("type") == "websocket.connect":
                    await send({"type": "websocket.close", "code": 1008})
                return
        await self.app(scope, receive, send)
