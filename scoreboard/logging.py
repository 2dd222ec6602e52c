"""Structured JSON logs: one object per line, the request id on every line, secrets scrubbed.

The request id lives in a context variable, bound by ``scoreboard.request_id`` for HTTP requests
and WebSocket connections (and by the Celery signals below for tasks), so any logger anywhere in
the code base gets it without passing it around. Log records never carry tokens or secrets:
JWT-shaped strings, ``Bearer`` credentials and ``password=``/``secret=``/``token=`` pairs are
replaced before a line is written, whatever a caller put in the message or its ``extra``.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import json
import logging
import re
import uuid
from collections.abc import Iterator
from typing import Any

REQUEST_ID_HEADER = "X-Request-ID"
# Accepted from a client or proxy as is; anything else is replaced by a fresh id (no log injection).
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{8,64}$")

_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("scoreboard_request_id", default=None)

# Security events (failed authentication, replays, blocks, rate limits) go here, at WARNING.
SECURITY_LOGGER = "scoreboard.security"

REDACTED = "[redacted]"
_JWT_RE = re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*")
_BEARER_RE = re.compile(r"(?i)\b(bearer)\s+[^\s,;\"']+")
_SECRET_PAIR_RE = re.compile(
    r"(?i)\b([\w-]*(?:password|passwd|secret|token|api[_-]?key|authorization|cookie)[\w-]*)"
    r"(\s*[=:]\s*)(\"[^\"]*\"|'[^']*'|[^\s,;&]+)"
)
_SECRET_KEY_RE = re.compile(r"(?i)(password|passwd|secret|token|api[_-]?key|authorization|cookie|signature)")

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD_ATTRS = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys()
    | {"message", "asctime", "request_id", "taskName", "color_message"}
)


def new_request_id() -> str:
    return uuid.uuid4().hex


def clean_request_id(value: str | None) -> str:
    """The caller's id when it is a sane token (nginx's ``$request_id`` is), else a fresh one."""
    if value and _REQUEST_ID_RE.match(value):
        return value
    return new_request_id()


def get_request_id() -> str | None:
    return _request_id.get()


def set_request_id(value: str | None) -> contextvars.Token[str | None]:
    return _request_id.set(value)


def reset_request_id(token: contextvars.Token[str | None]) -> None:
    _request_id.reset(token)


@contextlib.contextmanager
def bound_request_id(value: str | None) -> Iterator[str]:
    """Bind a request id (a cleaned ``value`` or a fresh one) for the duration of the block."""
    request_id = clean_request_id(value)
    token = _request_id.set(request_id)
    try:
        yield request_id
    finally:
        _request_id.reset(token)


def redact(text: str) -> str:
    """Scrub JWTs, bearer credentials and secret-looking ``key=value`` pairs from a string."""
    if not text:
        return text
    text = _JWT_RE.sub(REDACTED, text)
    text = _BEARER_RE.sub(lambda m: f"{m.group(1)} {REDACTED}", text)
    return _SECRET_PAIR_RE.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", text)


def _redact_value(key: str, value: Any) -> Any:
    if _SECRET_KEY_RE.search(key):
        return REDACTED
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {str(k): _redact_value(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact_value(key, v) for v in value]
    if value is None or isinstance(value, bool | int | float):
        return value
    return redact(str(value))


class RequestIdFilter(logging.Filter):
    """Puts the bound request id on every record (None outside a request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = _request_id.get()
        return True


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "message", "request_id", ...extra, "exc"}`` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        request_id = getattr(record, "request_id", None) or _request_id.get()
        entry: dict[str, Any] = {
            "ts": dt.datetime.fromtimestamp(record.created, tz=dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
            "request_id": request_id,
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                entry[key] = _redact_value(key, value)
        if record.exc_info:
            entry["exc"] = redact(self.formatException(record.exc_info))
        elif record.exc_text:
            entry["exc"] = redact(record.exc_text)
        if record.stack_info:
            entry["stack"] = redact(self.formatStack(record.stack_info))
        return json.dumps(entry, default=str, ensure_ascii=False)


class PlainFormatter(logging.Formatter):
    """Human-readable lines for development (``LOG_FORMAT=plain``), still scrubbed and with the id."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        if getattr(record, "request_id", None) is None:
            record.request_id = _request_id.get() or "-"
        return redact(super().format(record))


def logging_config(*, level: str = "INFO", fmt: str = "json") -> dict[str, Any]:
    """The LOGGING dict for settings: every line through one stderr handler in ``fmt``.

    The servers' own loggers (gunicorn, uvicorn, daphne, celery) are routed through the same
    handler so a process never mixes formats; their access logs are left to nginx, which logs
    the same request id.
    """
    formatter = "json" if fmt == "json" else "plain"
    handler = ["console"]
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": "scoreboard.logging.RequestIdFilter"}},
        "formatters": {
            "json": {"()": "scoreboard.logging.JsonFormatter"},
            "plain": {"()": "scoreboard.logging.PlainFormatter"},
        },
        "handlers": {
            "console": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
                "formatter": formatter,
                "filters": ["request_id"],
            }
        },
        "root": {"handlers": handler, "level": level},
        "loggers": {
            "django.request": {"level": "ERROR"},
            "django.server": {"level": "WARNING"},
            SECURITY_LOGGER: {"level": "WARNING"},
            "gunicorn.error": {"handlers": handler, "level": level, "propagate": False},
            "gunicorn.access": {"handlers": [], "level": "WARNING", "propagate": False},
            "uvicorn": {"handlers": handler, "level": level, "propagate": False},
            "uvicorn.error": {"handlers": [], "level": level, "propagate": True},
            "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": False},
            "daphne": {"handlers": handler, "level": "WARNING", "propagate": False},
            "celery": {"handlers": handler, "level": level, "propagate": False},
        },
    }


def security_event(event: str, message: str, **fields: Any) -> None:
    """One WARNING line on the security logger: ``event`` is a stable name (``failed_auth``...)."""
    logging.getLogger(SECURITY_LOGGER).warning(message, extra={"event": event, **fields})


_task_tokens: dict[str, contextvars.Token[str | None]] = {}


def install_celery_request_ids() -> None:
    """Carry the request id of the publishing request into the task's log lines.

    A task queued by a request logs that request's id; a task started by beat logs its task id.
    An eager task (the embedded default) keeps the caller's id and gives it back afterwards.
    """
    from celery import signals

    @signals.before_task_publish.connect(weak=False)
    def _stamp(headers: dict[str, Any] | None = None, **_: Any) -> None:
        request_id = _request_id.get()
        if headers is not None and request_id:
            headers.setdefault("request_id", request_id)

    @signals.task_prerun.connect(weak=False)
    def _bind(task_id: str | None = None, task: Any = None, **_: Any) -> None:
        request = getattr(task, "request", None)
        inherited = getattr(request, "request_id", None) if request is not None else None
        bound = clean_request_id(inherited or _request_id.get() or task_id)
        _task_tokens[task_id or ""] = _request_id.set(bound)

    @signals.task_postrun.connect(weak=False)
    def _unbind(task_id: str | None = None, **_: Any) -> None:
        token = _task_tokens.pop(task_id or "", None)
        if token is not None:
            with contextlib.suppress(ValueError):  # set in another context: nothing to give back
                _request_id.reset(token)
