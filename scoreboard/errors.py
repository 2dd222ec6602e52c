"""One JSON error envelope for every failure: ``{"success": false, "error": {code, message, details}}``."""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.db import DatabaseError
from django.http import Http404, JsonResponse
from rest_framework import exceptions, status
from rest_framework.response import Response

logger = logging.getLogger(__name__)


class ApiError(exceptions.APIException):
    """An error a service raises with its HTTP status, a stable code and optional details."""

    status_code: int = status.HTTP_400_BAD_REQUEST
    default_code = "bad_request"
    default_detail = "Bad request."

    def __init__(
        self,
        message: str | None = None,
        *,
        code: str | None = None,
        details: Any = None,
        status_code: int | None = None,
    ) -> None:
        super().__init__(detail=message or self.default_detail, code=code or self.default_code)
        self.code = code or self.default_code
        self.details = details
        if status_code is not None:
            self.status_code = status_code


class Conflict(ApiError):
    status_code: int = status.HTTP_409_CONFLICT
    default_code = "conflict"
    default_detail = "Conflict."


class NotFound(ApiError):
    status_code: int = status.HTTP_404_NOT_FOUND
    default_code = "not_found"


class Unauthorized(ApiError):
    status_code: int = status.HTTP_401_UNAUTHORIZED
    default_code = "unauthorized"
    default_detail = "Authentication failed."


class Forbidden(ApiError):
    status_code: int = status.HTTP_403_FORBIDDEN
    default_code = "forbidden"
    default_detail = "Forbidden."


class TooManyRequests(ApiError):
    status_code: int = status.HTTP_429_TOO_MANY_REQUESTS
    default_code = "rate_limited"
    default_detail = "Too many requests."

    def __init__(
        self, message: str | None = None, *, retry_after: int = 60, code: str | None = None, details: Any = None
    ) -> None:
        super().__init__(message, code=code, details=details)
        self.retry_after = max(1, int(retry_after))


class ServiceUnavailable(ApiError):
    status_code: int = status.HTTP_503_SERVICE_UNAVAILABLE
    default_code = "service_unavailable"
    default_detail = "The service is temporarily unavailable; nothing was applied. Retry later."


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    return {"success": False, "error": {"code": code, "message": message, "details": details}}


def error_response(
    status_code: int, code: str, message: str, details: Any = None, headers: dict[str, str] | None = None
) -> JsonResponse:
    response = JsonResponse(error_body(code, message, details), status=status_code)
    for key, value in (headers or {}).items():
        response[key] = value
    return response


# DRF's own exceptions mapped to our stable codes.
_DRF_CODES: dict[type[exceptions.APIException], str] = {
    exceptions.ParseError: "malformed_json",
    exceptions.UnsupportedMediaType: "unsupported_media_type",
    exceptions.MethodNotAllowed: "method_not_allowed",
    exceptions.NotAcceptable: "not_acceptable",
    exceptions.NotFound: "not_found",
    exceptions.NotAuthenticated: "not_authenticated",
    exceptions.AuthenticationFailed: "authentication_failed",
    exceptions.PermissionDenied: "forbidden",
    exceptions.Throttled: "rate_limited",
    exceptions.ValidationError: "invalid_request",
}


def _message_and_details(exc: exceptions.APIException) -> tuple[str, Any]:
    detail = exc.detail
    if isinstance(exc, exceptions.ValidationError):
        return "The request body is invalid.", detail
    if isinstance(detail, dict):
        message = str(detail.get("detail", exc.default_detail))
        extra = {k: v for k, v in detail.items() if k not in ("detail", "code")}
        return message, extra or None
    if isinstance(detail, list):
        return str(exc.default_detail), detail
    return str(detail), None


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF exception handler producing the envelope; unknown exceptions become a JSON 500."""
    if isinstance(exc, RequestDataTooBig):
        return Response(
            error_body("payload_too_large", "The request body is too large."),
            status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
        )
    if isinstance(exc, DatabaseError):
        logger.exception("database error while handling a request")
        exc = ServiceUnavailable()
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()

    from rest_framework.views import exception_handler  # here: rest_framework.views imports our auth

    response = exception_handler(exc, context)
    if response is None or not isinstance(exc, exceptions.APIException):
        return None  # ApiExceptionMiddleware turns it into a JSON 500.

    if isinstance(exc, ApiError):
        body = error_body(exc.code, str(exc.detail), exc.details)
    else:
        code = next((c for cls, c in _DRF_CODES.items() if isinstance(exc, cls)), "error")
        if isinstance(exc, exceptions.AuthenticationFailed | exceptions.NotAuthenticated):
            # Expired, forged and malformed JWTs all answer 401 (never 403).
            response.status_code = status.HTTP_401_UNAUTHORIZED
        message, details = _message_and_details(exc)
        body = error_body(code, message, details)
    response.data = body
    if isinstance(exc, TooManyRequests):
        response["Retry-After"] = str(exc.retry_after)
    elif isinstance(exc, exceptions.Throttled):
        response["Retry-After"] = str(int(getattr(exc, "wait", None) or 60))
    return response
