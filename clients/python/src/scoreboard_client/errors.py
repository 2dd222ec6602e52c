"""The service's error envelope ``{"success": false, "error": {code, message, details}}`` as exceptions."""

from __future__ import annotations

from typing import Any


class ScoreboardError(Exception):
    """Any error answer of the service: ``status``, ``code``, ``message``, ``details``."""

    def __init__(self, status: int, code: str, message: str, details: Any = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.details = details


class TransportError(ScoreboardError):
    """The service could not be reached, or answered something that is not the JSON envelope."""


class BadRequest(ScoreboardError):
    """400: the body or a parameter is invalid (``details`` says which field)."""


class Unauthorized(ScoreboardError):
    """401: missing, expired or forged credentials (access token, API key or action token)."""


class Forbidden(ScoreboardError):
    """403: authenticated but not allowed (scope, disabled account, another player's token)."""


class NotFound(ScoreboardError):
    """404."""


class Conflict(ScoreboardError):
    """409."""


class ActionTokenReplayed(Conflict):
    """409 ``action_token_replayed``: this token was already applied; ``original`` is that result."""

    @property
    def original(self) -> dict[str, Any] | None:
        return self.details if isinstance(self.details, dict) else None


class RateLimited(ScoreboardError):
    """429: rate limited or blocked by the fraud engine; retry after ``retry_after`` seconds."""

    def __init__(self, status: int, code: str, message: str, details: Any = None, retry_after: int | None = None):
        super().__init__(status, code, message, details)
        self.retry_after = retry_after


class ServiceUnavailable(ScoreboardError):
    """503: a backing service is down; nothing was applied, retry later."""


_BY_STATUS: dict[int, type[ScoreboardError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    503: ServiceUnavailable,
}


def error_from_answer(status: int, body: Any, retry_after: str | None) -> ScoreboardError:
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return TransportError(status, "unexpected_answer", f"HTTP {status} without the error envelope", body)
    code = str(error.get("code", "error"))
    message = str(error.get("message", ""))
    details = error.get("details")
    if status == 429:
        seconds = int(retry_after) if retry_after and retry_after.isdigit() else None
        return RateLimited(status, code, message, details, retry_after=seconds)
    if status == 409 and code == "action_token_replayed":
        return ActionTokenReplayed(status, code, message, details)
    return _BY_STATUS.get(status, ScoreboardError)(status, code, message, details)
