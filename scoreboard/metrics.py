"""Prometheus metrics: the SPEC.md list, one tiny API for the code paths that count things.

Callers just do ``metrics.SCORE_UPDATES.inc()`` or ``metrics.RATE_LIMIT_TRIGGERS.labels(scope="ip").inc()``.

With ``PROMETHEUS_MULTIPROC_DIR`` set (``make serve``, the containers) every process — gunicorn
workers, ASGI servers, Celery — writes its samples to files there and any one of them exposes the
sum, so ``/metrics`` shows the whole machine whichever worker answers. Without it (the embedded
default, tests) the process's own registry is shown.

Exposed on ``/metrics`` (nginx allows it from loopback only) and, when ``METRICS_PORT`` is set,
by ``python -m scoreboard.metrics_server`` on that port.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

from django.http import HttpRequest, HttpResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from scoreboard.errors import error_response

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
if os.environ.get(MULTIPROC_ENV):
    # The samples are files in this directory: it must exist before the first metric is defined.
    os.makedirs(os.environ[MULTIPROC_ENV], exist_ok=True)

# ---------------------------------------------------------------------------------------------
# Business and security counters (SPEC.md "Key Metrics")
# ---------------------------------------------------------------------------------------------
SCORE_UPDATES = Counter("scoreboard_score_updates", "Score increments applied (committed in PostgreSQL).")
SCORE_REPLAYS = Counter("scoreboard_score_replays", "Score submissions refused as replays of a used action token.")
FRAUD_DETECTIONS = Counter(
    "scoreboard_fraud_detections",
    "Submissions the fraud engine flagged for review or blocked.",
    ["outcome"],  # flagged | blocked
)
RATE_LIMIT_TRIGGERS = Counter(
    "scoreboard_rate_limit_triggers",
    "Requests refused by a rate limit.",
    ["scope"],  # user | ip | global
)
BLOCKED_REQUESTS = Counter(
    "scoreboard_blocked_requests",
    "HTTP requests refused with 401, 403, 409 or 429 (counted by the request middleware).",
    ["status", "code"],
)
FAILED_AUTH = Counter(
    "scoreboard_failed_auth",
    "Failed authentications: HTTP 401s (by error code) and refused WebSocket auth frames.",
    ["reason"],
)

# ---------------------------------------------------------------------------------------------
# Real time
# ---------------------------------------------------------------------------------------------
WS_CONNECTIONS = Gauge(
    "scoreboard_websocket_connections",
    "Open WebSocket connections (all processes).",
    multiprocess_mode="livesum",
)
WS_CONNECTIONS_OPENED = Counter("scoreboard_websocket_connections_opened", "WebSocket connections accepted.")
SSE_CONNECTIONS = Gauge(
    "scoreboard_sse_connections",
    "Open Server-Sent Events streams (all processes).",
    multiprocess_mode="livesum",
)

# ---------------------------------------------------------------------------------------------
# HTTP
# ---------------------------------------------------------------------------------------------
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.5, 5.0)
HTTP_REQUESTS = Counter("scoreboard_http_requests", "HTTP requests served by Django.", ["method", "route", "status"])
HTTP_LATENCY = Histogram(
    "scoreboard_http_request_duration_seconds",
    "Time Django took to produce the response (for streams: until the stream started).",
    ["method", "route"],
    buckets=LATENCY_BUCKETS,
)

# Statuses counted as "blocked" requests.
_BLOCKED_STATUSES = frozenset({401, 403, 409, 429})
UNMATCHED_ROUTE = "unmatched"


def route_of(request: HttpRequest) -> str:
    """The URL pattern (bounded label), never the raw path (unbounded, may carry ids)."""
    match = getattr(request, "resolver_match", None)
    if match is None:
        return UNMATCHED_ROUTE
    return "/" + str(match.route) if match.route else (match.view_name or UNMATCHED_ROUTE)


def _method_label(method: str | None) -> str:
    method = (method or "").upper()
    return method if method in {"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"} else "OTHER"


@functools.cache
def _request_children(method: str, route: str, status: int) -> tuple[Any, Any]:
    """The latency histogram's and the request counter's labelled children, looked up once:
    prometheus_client's ``labels()`` validates and looks the labels up under a lock on every call,
    and the label values are bounded (methods, URL patterns, statuses)."""
    return (
        HTTP_LATENCY.labels(method=method, route=route),
        HTTP_REQUESTS.labels(method=method, route=route, status=str(status)),
    )


class MetricsMiddleware:
    """Counts and times every request; counts refusals and failed authentications by code."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        response = self.get_response(request)
        elapsed = time.perf_counter() - started

        def code() -> str | None:
            from scoreboard.request_id import _error_code

            return _error_code(response)

        request_observe(_method_label(request.method), route_of(request), response.status_code, elapsed, code)
        return response


def request_observe(method: str, route: str, status: int, elapsed: float, error_code: Callable[[], str | None]) -> None:
    """Count and time one request (``method`` a bounded label, ``route`` its URL pattern); a refusal
    is counted by its envelope's code (``error_code``, only called for one)."""
    latency, requests = _request_children(method, route, status)
    latency.observe(elapsed)
    requests.inc()
    if status in _BLOCKED_STATUSES:
        code = error_code() or "none"
        BLOCKED_REQUESTS.labels(status=str(status), code=code).inc()
        if status == 401:
            FAILED_AUTH.labels(reason=code).inc()


SSE_PATH = "/v1/leaderboard/stream"


class StreamMetricsMiddleware:
    """ASGI wrapper (HTTP) counting open Server-Sent Events streams: from a 200 response start
    until the application returns (the client left or the server stops)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope.get("type") != "http" or scope.get("path") != SSE_PATH:
            await self.inner(scope, receive, send)
            return
        streaming = False

        async def counting_send(message: Any) -> None:
            nonlocal streaming
            if message.get("type") == "http.response.start" and message.get("status") == 200 and not streaming:
                streaming = True
                SSE_CONNECTIONS.inc()
            await send(message)

        try:
            await self.inner(scope, receive, counting_send)
        finally:
            if streaming:
                SSE_CONNECTIONS.dec()


class WebSocketMetricsMiddleware:
    """ASGI wrapper counting accepted WebSocket connections while they are open."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope.get("type") != "websocket":
            await self.inner(scope, receive, send)
            return
        accepted = False

        async def counting_send(message: Any) -> None:
            nonlocal accepted
            if message.get("type") == "websocket.accept" and not accepted:
                accepted = True
                WS_CONNECTIONS.inc()
                WS_CONNECTIONS_OPENED.inc()
            await send(message)

        try:
            await self.inner(scope, receive, counting_send)
        finally:
            if accepted:
                WS_CONNECTIONS.dec()


# ---------------------------------------------------------------------------------------------
# Stores: database connections in use and Redis memory, read at scrape time
# ---------------------------------------------------------------------------------------------
_PG_CONNECTIONS = """
SELECT coalesce(state, 'unknown'), count(*) FROM pg_stat_activity
 WHERE datname = current_database() AND backend_type = 'client backend'
 GROUP BY 1
"""


class StoresCollector(Collector):
    """PostgreSQL connections (the pool SPEC.md means: server connections vs max_connections) and
    Redis memory. A store that does not answer shows ``*_up 0`` instead of failing the scrape."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        yield from self._database()
        yield from self._redis()

    def _database(self) -> Iterator[GaugeMetricFamily]:
        from django.db import DatabaseError, connection

        up = GaugeMetricFamily("scoreboard_db_up", "1 when the database answered the scrape.")
        if connection.vendor != "postgresql":
            up.add_metric([], 1.0)
            yield up
            return
        try:
            with connection.cursor() as cursor:
                cursor.execute(_PG_CONNECTIONS)
                by_state = cursor.fetchall()
                cursor.execute("SHOW max_connections")
                row = cursor.fetchone()
                max_connections = int(row[0]) if row else 0
        except DatabaseError:
            connection.close_if_unusable_or_obsolete()
            up.add_metric([], 0.0)
            yield up
            return
        up.add_metric([], 1.0)
        yield up
        used = GaugeMetricFamily(
            "scoreboard_db_connections", "Client connections to this database, by state.", labels=["state"]
        )
        for state, count in by_state:
            used.add_metric([str(state)], float(count))
        yield used
        yield GaugeMetricFamily(
            "scoreboard_db_max_connections", "PostgreSQL max_connections.", value=float(max_connections)
        )

    def _redis(self) -> Iterator[GaugeMetricFamily]:
        from scoreboard.redis import REDIS_ERRORS, get_redis

        client = get_redis()
        if client is None:
            return
        up = GaugeMetricFamily("scoreboard_redis_up", "1 when Redis answered the scrape.")
        try:
            info: dict[str, Any] = client.info("memory")
        except REDIS_ERRORS:
            up.add_metric([], 0.0)
            yield up
            return
        up.add_metric([], 1.0)
        yield up
        # A cluster answers per node ({"host:port": {...}}): the sum over its nodes.
        nodes = [v for v in info.values() if isinstance(v, dict)] or [info]
        used = sum(float(node.get("used_memory", 0)) for node in nodes)
        yield GaugeMetricFamily("scoreboard_redis_used_memory_bytes", "Redis used_memory.", value=used)
        yield GaugeMetricFamily(
            "scoreboard_redis_maxmemory_bytes",
            "Redis maxmemory (0 = no limit).",
            value=float(info.get("maxmemory", 0)),
        )


def is_multiprocess() -> bool:
    return bool(os.environ.get(MULTIPROC_ENV))


def render() -> bytes:
    """The exposition text: every process's samples (or this one's) plus the stores' gauges."""
    if is_multiprocess():
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        processes = generate_latest(registry)
    else:
        processes = generate_latest(REGISTRY)
    stores = CollectorRegistry()
    stores.register(StoresCollector())
    return processes + generate_latest(stores)


def metrics_view(request: HttpRequest) -> HttpResponse:
    """The scrape endpoint of an app process, for a scraper inside the network. A request that came
    through a proxy (it carries X-Forwarded-For) is from outside: 404, as nginx answers itself."""
    if "HTTP_X_FORWARDED_FOR" in request.META:
        return error_response(404, "not_found", "Not found.")
    return HttpResponse(render(), content_type=CONTENT_TYPE_LATEST)


def serve(port: int, addr: str = "0.0.0.0") -> None:  # noqa: S104 - a metrics port is meant to be scraped
    """Blocking metrics server for ``METRICS_PORT`` (run as ``python -m scoreboard.metrics_server``)."""
    import http.server

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.split("?")[0] not in ("/metrics", "/"):
                self.send_error(404)
                return
            body = render()
            self.send_response(200)
            self.send_header("Content-Type", CONTENT_TYPE_LATEST)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return

    # One thread: scrapes are rare, and each thread would hold its own database connection.
    server = http.server.HTTPServer((addr, port), Handler)
    server.serve_forever()
