"""Health endpoints for load balancers, compose and Kubernetes.

- ``/healthz``: the process is alive and serving (touches nothing else) — a liveness probe.
- ``/readyz``: the database answers and every migration is applied — a readiness probe. 503 with
  the failing checks otherwise, so a balancer stops sending traffic to a process that cannot do
  useful work, and sends it again once it can. Redis is *not* a readiness condition: it holds
  derived data only and every caller degrades to PostgreSQL without it (DESIGN.md), so a Redis
  outage must not pull every pod out of service. It is reported in the body instead:
  ``checks.redis`` is ``ok`` or ``degraded`` (circuit open or no answer within the short timeout)
  and ``status`` is ``degraded`` while it is.
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import DatabaseError, connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache

from scoreboard.errors import error_response
from scoreboard.redis import redis_state
from scoreboard.version import __version__

logger = logging.getLogger(__name__)

# Once every migration is applied it stays so for the life of the process (new migrations come
# with new code, hence a new process), so the migration graph is loaded only until it passes.
_migrations_applied = False


def _database_check() -> tuple[bool, str]:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except DatabaseError as exc:
        connection.close_if_unusable_or_obsolete()
        return False, f"unreachable: {type(exc).__name__}"
    return True, "ok"


def _migrations_check() -> tuple[bool, str]:
    global _migrations_applied
    if _migrations_applied:
        return True, "ok"
    from django.db.migrations.executor import MigrationExecutor

    try:
        executor = MigrationExecutor(connection)
        pending = executor.migration_plan(executor.loader.graph.leaf_nodes())
    except DatabaseError as exc:
        return False, f"unknown: {type(exc).__name__}"
    if pending:
        return False, f"{len(pending)} pending"
    _migrations_applied = True
    return True, "ok"


def readiness() -> tuple[bool, dict[str, str]]:
    """Run the checks; returns (ready, {check: "ok" | reason}). Redis never decides readiness."""
    results: dict[str, tuple[bool, str]] = {"database": _database_check()}
    if results["database"][0]:
        results["migrations"] = _migrations_check()
    else:
        results["migrations"] = (False, "unknown: database unreachable")
    ready = all(ok for ok, _ in results.values())
    checks = {name: detail for name, (_, detail) in results.items()}
    redis = redis_state()  # None: the embedded default has no Redis
    if redis is not None:
        checks["redis"] = redis
    return ready, checks


def _method_not_allowed(request: HttpRequest) -> JsonResponse | None:
    if request.method in ("GET", "HEAD"):
        return None
    return error_response(405, "method_not_allowed", f"Method {request.method} not allowed.", headers={"Allow": "GET"})


@never_cache
def healthz(request: HttpRequest) -> JsonResponse:
    if refused := _method_not_allowed(request):
        return refused
    return JsonResponse({"success": True, "data": {"status": "alive", "version": __version__}})


@never_cache
def readyz(request: HttpRequest) -> JsonResponse:
    if refused := _method_not_allowed(request):
        return refused
    ready, checks = readiness()
    if ready:
        status = "degraded" if "degraded" in checks.values() else "ready"
        if status == "degraded":
            logger.warning("ready, degraded", extra={"checks": checks})
        return JsonResponse({"success": True, "data": {"status": status, "checks": checks}})
    logger.warning("not ready", extra={"checks": checks})
    details: dict[str, Any] = {"checks": checks}
    return error_response(503, "not_ready", "A dependency is unavailable.", details)
