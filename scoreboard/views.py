"""Fallback error views: JSON under /v1/ (and for JSON clients), Django's defaults elsewhere."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.views import defaults
from django.views.decorators.csrf import csrf_exempt

from scoreboard.errors import error_response


def _wants_json(request: HttpRequest) -> bool:
    return request.path.startswith("/v1/") or "application/json" in request.headers.get("Accept", "")


@csrf_exempt
def api_not_found(request: HttpRequest) -> HttpResponse:
    return error_response(404, "not_found", f"No endpoint at {request.path}.")


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if _wants_json(request):
        return api_not_found(request)
    return defaults.page_not_found(request, exception or Exception())


def server_error(request: HttpRequest) -> HttpResponse:
    if _wants_json(request):
        return error_response(500, "internal_error", "Internal server error.")
    return defaults.server_error(request)
