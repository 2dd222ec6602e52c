"""Request guards that must answer in JSON before or after DRF gets a say."""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.conf import settings
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse

from scoreboard.errors import error_response

logger = logging.getLogger(__name__)

API_PREFIX = "/v1/"


class BodySizeLimitMiddleware:
    """Refuse oversized bodies with 413 from the declared length, before anything reads them."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        length = request.META.get("CONTENT_LENGTH") or "0"
        try:
            declared = int(length)
        except ValueError:
            return error_response(400, "bad_content_length", "Content-Length is not a number.")
        if declared > settings.MAX_REQUEST_BODY_BYTES:
            return error_response(
                413,
                "payload_too_large",
                f"The request body is larger than {settings.MAX_REQUEST_BODY_BYTES} bytes.",
            )
        return self.get_response(request)


class ApiExceptionMiddleware:
    """Under /v1/, an unhandled exception is a JSON 500 (or 503 for the database) — never HTML."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not request.path.startswith(API_PREFIX):
            return None
        if isinstance(exception, DatabaseError):
            logger.exception("database unavailable")
            return error_response(
                503, "service_unavailable", "The database is unavailable; nothing was applied. Retry later."
            )
        logger.exception("unhandled error on %s", request.path)
        return error_response(500, "internal_error", "Internal server error.")
