"""Reads of the public read endpoints from a PostgreSQL read replica (``DATABASE_REPLICA_URL``).

With ``DATABASE_REPLICA_URL`` set, settings add a ``replica`` database, :class:`ReplicaRouter` and
:class:`ReplicaReadMiddleware`. Routing is *opt-in per request*: nothing reads from the replica
unless the middleware marked the request as a replica read, so the score update, every write,
the admin, Celery tasks (the drift check and the index rebuild read what they repair from: it must
be the primary) and management commands all stay on the primary.

A request is a replica read when it is a GET/HEAD of one of :data:`REPLICA_READ_VIEWS` (leaderboard,
board list/detail/entries/around/lookup, standings, the CSV export, the board pages) and it is
not a read-your-write: a read of one player's own data (a ``user_id`` in the URL — ``me`` or an id —
made with credentials) goes to the primary, because a replica may not have replayed the write the
player just made. Anonymous spectators and other players' boards are served by the replica. The
models of authentication (accounts, refresh tokens, sessions) are always read from the primary.

Within a replica read, the first write through the ORM pins the rest of the request to the
primary: a request never reads from the replica what it has just written. (Raw SQL is not seen by
the router; no read view writes with it.) The replica lags (asynchronous streaming replication: usually milliseconds, up
to seconds under load); the pages it serves are at most that old. The top of a live board comes
from the Redis index anyway (written after the commit), so the replica mostly carries the database
reads of exports, board metadata and the degraded mode (Redis down).
"""

from __future__ import annotations

import contextvars
import re
from collections.abc import Callable
from typing import Any

from django.db import connections
from django.http import HttpRequest, HttpResponse

REPLICA = "replica"
PRIMARY = "default"

# URL names (scores/urls.py, realtime/urls.py) whose GET is served from the replica.
REPLICA_READ_VIEWS = frozenset(
    {
        "leaderboard",
        "boards",
        "board",
        "board-entries",
        "board-player",
        "board-around",
        "board-lookup",
        "board-export",
        "player-standings",
        "board-page",
        "board-page-one",
    }
)
# Who may do what is never read from a replica, even in a replica read: a disabled player, a revoked
# game-server key or a blacklisted refresh token must take effect at once, not after the lag.
PRIMARY_APPS = frozenset({"accounts", "token_blacklist", "auth", "sessions"})
_READ_METHODS = frozenset({"GET", "HEAD"})
_CREDENTIALS = ("HTTP_AUTHORIZATION", "HTTP_X_API_KEY")

# None: the primary. REPLICA: this request's reads may go to the replica.
_reads_from: contextvars.ContextVar[str | None] = contextvars.ContextVar("sb_reads_from", default=None)


def replica_configured() -> bool:
    return REPLICA in connections.settings


def reads_mark(
    method: str, url_name: str, kwargs: dict[str, Any], meta: dict[str, Any]
) -> contextvars.Token[str | None]:
    """What :class:`ReplicaReadMiddleware` decides for a request, for a caller that serves it without
    Django's machinery (``scoreboard.fastpath``); reset the token when the request ends."""
    return _reads_from.set(
        REPLICA if replica_configured() and is_replica_read(method, url_name, kwargs, meta) else None
    )


def reads_reset(token: contextvars.Token[str | None]) -> None:
    _reads_from.reset(token)


def is_replica_read(method: str, url_name: str | None, kwargs: dict[str, Any], meta: dict[str, Any]) -> bool:
    """Whether a request may read from the replica (see the module doc)."""
    if method not in _READ_METHODS or url_name not in REPLICA_READ_VIEWS:
        return False
    own_data = "user_id" in kwargs and any(meta.get(h) for h in _CREDENTIALS)
    return not own_data


class ReplicaReadMiddleware:
    """Marks replica reads (after URL resolution, so by URL name); every other request reads the primary."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        # Set at every request's start, never reset at its end: a streamed body (the CSV export) is
        # read by the server after this returns, in the same context, and must still see it.
        _reads_from.set(None)
        return self.get_response(request)

    def process_view(
        self, request: HttpRequest, view: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> None:
        match = request.resolver_match
        if match is not None and is_replica_read(request.method or "", match.url_name, kwargs, request.META):
            _reads_from.set(REPLICA)


class ReplicaRouter:
    """Reads marked by :class:`ReplicaReadMiddleware` go to ``replica``; everything else to ``default``."""

    def db_for_read(self, model: type, **hints: Any) -> str | None:
        if _reads_from.get() != REPLICA or model._meta.app_label in PRIMARY_APPS:  # type: ignore[attr-defined]
            return None
        return REPLICA

    def db_for_write(self, model: type, **hints: Any) -> str | None:
        # Read your write: the rest of this request reads the primary. Not for the models that are
        # read from the primary anyway (a game-server key's last use, bumped by every export).
        if model._meta.app_label not in PRIMARY_APPS:  # type: ignore[attr-defined]
            _reads_from.set(None)
        return PRIMARY

    def allow_relation(self, obj1: Any, obj2: Any, **hints: Any) -> bool | None:
        # Both databases hold the same rows (a physical replica): relations between them are fine.
        if {obj1._state.db, obj2._state.db} <= {PRIMARY, REPLICA}:
            return True
        return None

    def allow_migrate(self, db: str, app_label: str, **hints: Any) -> bool | None:
        # A streaming replica is read-only and receives the primary's schema through replication.
        return False if db == REPLICA else None


_POSTGRES_URL = re.compile(r"^postgres(ql)?://")


def replica_database(url: str, primary: dict[str, Any]) -> dict[str, Any]:
    """The ``replica`` entry of ``DATABASES``: the primary's connection options, another server.

    Tests mirror it onto the primary's test database (a suite run with the variable set sees the same
    rows on both aliases); tests/scale/test_replica.py gives it a database of its own.
    """
    import environ

    if not _POSTGRES_URL.match(url):
        from django.core.exceptions import ImproperlyConfigured

        raise ImproperlyConfigured("DATABASE_REPLICA_URL must be a postgres:// URL (a PostgreSQL read replica).")
    entry = environ.Env.db_url_config(url)
    options = dict(primary.get("OPTIONS", {}))
    options.update(entry.get("OPTIONS", {}))
    entry["OPTIONS"] = options
    for key in ("CONN_MAX_AGE", "CONN_HEALTH_CHECKS"):
        if key in primary:
            entry[key] = primary[key]
    entry["TEST"] = {"MIRROR": PRIMARY}
    return entry
