"""The one Redis client of the process (a pooled connection), or None in the embedded default.

Redis trouble is a degraded mode, not an outage (DESIGN.md: Redis is derived from PostgreSQL).
Every synchronous Redis caller (index, limits, fraud windows, pre-filter, publish) gets, through
:func:`get_redis` / :func:`client_for`, the same three protections without any change of its own:

- **Short timeouts and no retries.** redis-py 6+ retries a failed command (10 times with
  exponential back-off in redis-py 8): against a hung Redis one command then takes seconds. Here
  a command gets one attempt and ``REDIS_SOCKET_TIMEOUT`` (0.25 s) to connect, send and read.
- **One circuit breaker per Redis server and process.** After ``REDIS_BREAKER_FAILURES``
  consecutive connection errors or timeouts the circuit opens: every command then fails at once
  with :class:`RedisUnavailable` (a ``redis.ConnectionError``, so it is in ``REDIS_ERRORS``) without
  touching the network. A background thread (never a request) pings the server every
  ``REDIS_BREAKER_PROBE_SECONDS`` and closes the circuit as soon as it answers.
- **A reconnect hook.** :func:`on_reconnect` registers callbacks, run (in that background thread)
  when the circuit closes again, and whenever a new connection finds that Redis lost its data
  (the sentinel key :data:`SENTINEL_KEY` is gone: a restart without persistence, a FLUSHALL). The
  event says which (:class:`Reconnected`), so the ranking index can rebuild or repair at once
  instead of at the next scheduled drift check.

**Redis Cluster.** With a cluster URL (``redis+cluster://host:port,host:port``, which settings make
from ``REDIS_CLUSTER_URL``) :func:`get_redis` returns a ``redis.cluster.RedisCluster``: the same
command and ``register_script`` API, one breaker per node, the same timeouts and no retries. Every
script and every multi-key command must touch one slot (CROSSSLOT otherwise): the keys of one board
carry its hash tag (``scores.ranking.board_tag``), and every key of the checks before a score
write (rate-limit counters, replay pre-filter, fraud windows) carries :data:`GATE_TAG`, so they
share one slot (:func:`gate_key`). A cluster node holds no sentinel key (a node accepts only the
keys of its own slots): there the "came back empty" signal is the index's own ``built`` mark.

``redis.ResponseError`` (the server answered with an error: a script bug, a wrong type) is not an
outage: it never opens the circuit and is logged at ERROR with its traceback
(``scoreboard.redis``), where an outage is only a warning. Callers still catch it through
``REDIS_ERRORS`` so that a bug in derived data never turns a committed update into a 500;
``REDIS_OUTAGE_ERRORS`` is the narrower tuple for code that must tell the two apart (retries).

The realtime hub's subscription is the one asynchronous client (``realtime/hub.py``). It shares
the same breaker (:func:`breaker_for_url`): it does not reconnect while the circuit is open,
reports its own connection failures and a PING left unanswered (a hung Redis) to it, and uses
the same short timeouts for its connect and its liveness checks.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias, cast
from urllib.parse import quote, unquote

import redis
from django.conf import settings
from django_redis.pool import ConnectionFactory
from hiredis import pack_command  # in the requirements (redis-py's fast parser uses it too)
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode, ClusterPipeline, RedisCluster
from redis.retry import Retry

logger = logging.getLogger(__name__)


class RedisUnavailable(redis.ConnectionError):
    """The circuit is open: Redis failed just now, so the command was not even sent."""


# Errors that mean "Redis is not usable right now": callers degrade to PostgreSQL.
REDIS_OUTAGE_ERRORS: tuple[type[Exception], ...] = (redis.ConnectionError, redis.TimeoutError, OSError)
# What callers catch around a Redis call: an outage, a reported error reply (see the module doc), or
# a cluster client's own refusal (no reachable node, keys of one command in several slots).
REDIS_ERRORS: tuple[type[Exception], ...] = (
    *REDIS_OUTAGE_ERRORS,
    redis.ResponseError,
    redis.exceptions.RedisClusterException,
)

# Present in every Redis the service has used; gone means Redis came back empty.
SENTINEL_KEY = "sb:redis:sentinel"
NO_RETRY = Retry(NoBackoff(), 0)

# The hash tag of every key the checks before a score write touch (one script, one slot on a cluster).
GATE_TAG = "sb:{gate}"

# A redis.Redis, or a RedisCluster in cluster mode: callers use the command API both share.
Client: TypeAlias = redis.Redis

CLUSTER_SCHEMES = ("redis+cluster://", "rediss+cluster://")
DEFAULT_PORT = 6379


def gate_key(*parts: str) -> str:
    """A key of the before-write checks: ``gate_key("fraud", "p", user_id)`` -> ``sb:{gate}:fraud:p:<id>``."""
    return ":".join((GATE_TAG, *parts))


def is_cluster_url(url: str) -> bool:
    return url.startswith(CLUSTER_SCHEMES)


def cluster_url(nodes_url: str) -> str:
    """``REDIS_CLUSTER_URL`` (``redis://h1:7000,h2:7000``, ``rediss://`` for TLS) as the data-plane URL."""
    for plain, scheme in (("redis://", CLUSTER_SCHEMES[0]), ("rediss://", CLUSTER_SCHEMES[1])):
        if nodes_url.startswith(plain):
            return scheme + nodes_url[len(plain) :]
    if is_cluster_url(nodes_url):
        return nodes_url
    raise ValueError("REDIS_CLUSTER_URL must look like redis://host:port,host:port (rediss:// for TLS)")


@dataclass(frozen=True)
class ClusterAddress:
    nodes: tuple[tuple[str, int], ...]
    username: str | None
    password: str | None
    tls: bool

    def node_url(self, index: int) -> str:
        """A plain URL of one startup node (pub/sub: a cluster node hears every PUBLISH)."""
        host, port = self.nodes[index % len(self.nodes)]
        auth = ""
        if self.password is not None:
            auth = f"{quote(self.username or '', safe='')}:{quote(self.password, safe='')}@"
        return f"{'rediss' if self.tls else 'redis'}://{auth}{host}:{port}/0"


def cluster_address(url: str) -> ClusterAddress:
    """Parse ``redis+cluster://[user:password@]host:port,host:port[/]``."""
    if not is_cluster_url(url):
        raise ValueError(f"not a cluster URL: {url!r}")
    tls = url.startswith(CLUSTER_SCHEMES[1])
    rest = url.split("://", 1)[1].split("/", 1)[0].split("?", 1)[0]
    username = password = None
    if "@" in rest:
        credentials, rest = rest.rsplit("@", 1)
        user, _, secret = credentials.partition(":")
        username, password = unquote(user) or None, unquote(secret)
    nodes = []
    for item in rest.split(","):
        host, _, port = item.strip().rpartition(":") if ":" in item else (item.strip(), "", str(DEFAULT_PORT))
        nodes.append((host.strip("[]"), int(port)))
    if not nodes or not all(h for h, _ in nodes):
        raise ValueError(f"a cluster URL needs at least one host:port: {url!r}")
    return ClusterAddress(tuple(nodes), username, password, tls)


@dataclass(frozen=True)
class Reconnected:
    """What :func:`on_reconnect` callbacks receive."""

    server: str  # "host:port"
    db: int
    # True: the sentinel key was missing, so Redis lost (or never had) its data: rebuild everything.
    empty: bool
    # When the circuit opened (time.time()), None when no outage was seen (a new connection found
    # Redis empty). Rows changed in PostgreSQL since then may be missing from the index.
    outage_started_at: float | None


ReconnectCallback = Callable[[Reconnected], None]
_callbacks: list[ReconnectCallback] = []
_callbacks_lock = threading.Lock()


def on_reconnect(callback: ReconnectCallback) -> ReconnectCallback:
    """Register ``callback(event)``; usable as a decorator. Registering the same one twice is a no-op.

    Callbacks run in a background thread of each process, one event at a time: keep them short
    (enqueue the work, take a lock in Redis so that one process of many does it). An exception is
    logged and never reaches Redis callers.
    """
    with _callbacks_lock:
        if callback not in _callbacks:
            _callbacks.append(callback)
    return callback


def _dispatch(event: Reconnected) -> None:
    if not getattr(settings, "REDIS_RECONNECT_HOOKS", True):
        return
    with _callbacks_lock:
        callbacks = list(_callbacks)
    try:
        for callback in callbacks:
            try:
                callback(event)
            except Exception:
                logger.exception("redis reconnect callback %r failed", callback)
    finally:
        from django.db import connections

        connections.close_all()  # a background thread: give its database connection back (pool)


def _dispatch_in_background(event: Reconnected) -> None:
    threading.Thread(target=_dispatch, args=(event,), name="redis-reconnect-hooks", daemon=True).start()


class CircuitBreaker:
    """Closed (commands go to Redis) or open (they fail at once); a prober thread closes it."""

    def __init__(self, server: str, *, failures: int, probe_seconds: float) -> None:
        self.server = server
        self.failure_threshold = max(1, failures)
        self.probe_seconds = probe_seconds
        self._lock = threading.Lock()
        self._failures = 0
        self._opened_at: float | None = None  # time.time() of the opening, None while closed
        self._probe: Callable[[], bool] | None = None  # True when Redis answered and had its sentinel
        self._db = 0

    @property
    def is_open(self) -> bool:
        return self._opened_at is not None

    @property
    def opened_at(self) -> float | None:
        return self._opened_at

    def set_probe(self, probe: Callable[[], bool], db: int) -> None:
        if self._probe is None:
            self._probe, self._db = probe, db

    def check(self) -> None:
        if self._opened_at is not None:
            raise RedisUnavailable(f"Redis at {self.server} failed recently (circuit open); not sent")

    def success(self) -> None:
        if self._failures:
            with self._lock:
                self._failures = 0

    def failure(self, exc: BaseException) -> None:
        with self._lock:
            self._failures += 1
            if self._opened_at is not None or self._failures < self.failure_threshold:
                return
            self._opened_at = time.time()
        logger.warning(
            "redis: circuit opened for %s after %s: %s; degrading to PostgreSQL",
            self.server,
            type(exc).__name__,
            exc,
        )
        threading.Thread(target=self._probe_until_back, name=f"redis-probe-{self.server}", daemon=True).start()

    def _probe_until_back(self) -> None:
        while True:
            time.sleep(self.probe_seconds)
            probe = self._probe
            try:
                had_sentinel = probe() if probe is not None else True
            except Exception as exc:  # still down (or hung): keep the circuit open
                logger.debug("redis: probe of %s failed: %s", self.server, exc)
                continue
            with self._lock:
                opened_at, self._opened_at, self._failures = self._opened_at, None, 0
            down_for = time.time() - (opened_at or time.time())
            logger.warning(
                "redis: %s answers again after %.1fs; circuit closed%s",
                self.server,
                down_for,
                " (it came back EMPTY)" if not had_sentinel else "",
            )
            _dispatch(Reconnected(self.server, self._db, empty=not had_sentinel, outage_started_at=opened_at))
            return

    def reset(self) -> None:
        """Close the circuit and forget failures (tests)."""
        with self._lock:
            self._failures, self._opened_at = 0, None


_breakers: dict[str, CircuitBreaker] = {}
_breakers_lock = threading.Lock()


def breaker_for(server: str) -> CircuitBreaker:
    with _breakers_lock:
        breaker = _breakers.get(server)
        if breaker is None:
            breaker = _breakers[server] = CircuitBreaker(
                server,
                failures=getattr(settings, "REDIS_BREAKER_FAILURES", 2),
                probe_seconds=getattr(settings, "REDIS_BREAKER_PROBE_SECONDS", 0.5),
            )
        return breaker


def breaker_for_url(url: str) -> CircuitBreaker | None:
    """The breaker of the server a ``redis://`` URL names (None for rediss:// and unix://, which
    keep redis-py's own connections). For callers with clients of their own, such as the realtime
    hub's async subscription: they check it before connecting and report what they see to it."""
    if not url.startswith("redis://"):
        return None
    kwargs = redis.ConnectionPool.from_url(url).connection_kwargs
    return breaker_for(f"{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}")


def reset_breakers() -> None:
    """Close every circuit (tests, after they brought a Redis back by hand)."""
    with _breakers_lock:
        for breaker in _breakers.values():
            breaker.reset()


def _mark_sentinel(client: redis.Redis) -> bool:
    """Set the sentinel if missing; True when it was already there (Redis kept its data)."""
    return not client.set(SENTINEL_KEY, uuid.uuid4().hex, nx=True)


class BreakerConnection(redis.Connection):
    """A redis-py connection that goes through its server's :class:`CircuitBreaker`."""

    # False on a cluster node: it refuses keys of slots it does not own (the sentinel among them).
    keeps_sentinel = True

    _known_breaker: CircuitBreaker | None = None

    def _breaker(self) -> CircuitBreaker:
        # Asked on every send and read: kept on the connection once its probe is set (breakers
        # live as long as the process, one per server; reset_breakers resets them in place).
        if self._known_breaker is not None:
            return self._known_breaker
        breaker = breaker_for(f"{self.host}:{self.port}")
        if breaker._probe is None:
            kwargs: dict[str, Any] = {
                "host": self.host,
                "port": self.port,
                "db": self.db,
                "username": self.username,
                "password": self.password,
                "socket_timeout": self.socket_timeout,
                "socket_connect_timeout": self.socket_connect_timeout,
                "retry": NO_RETRY,
            }

            keeps_sentinel = self.keeps_sentinel

            def probe() -> bool:
                with contextlib.closing(redis.Redis(**kwargs)) as client:
                    client.ping()
                    return _mark_sentinel(client) if keeps_sentinel else True

            breaker.set_probe(probe, int(self.db))
        self._known_breaker = breaker
        return breaker

    def connect(self) -> None:
        if self._sock:
            return
        breaker = self._breaker()
        breaker.check()
        try:
            super().connect()
        except redis.ResponseError:
            raise
        except REDIS_OUTAGE_ERRORS as exc:
            breaker.failure(exc)
            raise
        breaker.success()

    _handshake = False

    def on_connect_check_health(self, check_health: bool = True) -> None:
        self._handshake = True  # redis-py ignores error replies here (CLIENT SETINFO on an old server)
        try:
            super().on_connect_check_health(check_health=check_health)
        finally:
            self._handshake = False
        if not self.keeps_sentinel:
            return
        # One round trip per new connection (they are pooled): did Redis lose its data meanwhile?
        self.send_command("SET", SENTINEL_KEY, uuid.uuid4().hex, "NX")
        if self.read_response() is not None:  # set now: it was missing
            breaker = self._breaker()
            logger.warning("redis: %s holds no sentinel key: it is new or came back empty", breaker.server)
            _dispatch_in_background(Reconnected(breaker.server, int(self.db), empty=True, outage_started_at=None))

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        breaker = self._breaker()
        breaker.check()
        try:
            super().send_packed_command(command, check_health=check_health)
        except REDIS_OUTAGE_ERRORS as exc:
            breaker.failure(exc)
            raise

    def read_response(self, *args: Any, **kwargs: Any) -> Any:
        breaker = self._breaker()
        try:
            response = super().read_response(*args, **kwargs)
        except redis.exceptions.NoScriptError:
            breaker.success()  # normal: EVALSHA before the script is loaded; redis-py loads it
            raise
        except redis.ResponseError:
            breaker.success()  # the server answered: not an outage, a bug to fix
            if not self._handshake:
                logger.error("redis: error reply from %s (a bug, not an outage)", breaker.server, exc_info=True)
            raise
        except REDIS_OUTAGE_ERRORS as exc:
            breaker.failure(exc)
            raise
        breaker.success()
        return response


class ClusterBreakerConnection(BreakerConnection):
    """:class:`BreakerConnection` for a cluster node: the breaker and timeouts, no sentinel key."""

    keeps_sentinel = False


def pool_kwargs(timeout: float) -> dict[str, Any]:
    """Connection-pool options every Redis client of the service uses (also django-redis')."""
    return {
        "connection_class": BreakerConnection,
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "retry": NO_RETRY,
        "health_check_interval": 30,
    }


def _cluster_client(url: str, timeout: float) -> RedisCluster:
    address = cluster_address(url)
    options: dict[str, Any] = {
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        # One attempt per command, as on a single server; redirections (MOVED/ASK after a
        # resharding or a failover) are followed regardless, and a connection error makes the
        # client refresh the slot map on the next command.
        "retry": NO_RETRY,
        "require_full_coverage": True,
    }
    if address.tls:
        options["ssl"] = True  # redis-py's SSL connection class: no breaker there (as on one server)
    else:
        options["connection_class"] = ClusterBreakerConnection
    # Given as a URL (the first node, credentials included), redis-py builds each node's pool from
    # these options, connection_class among them; the other startup nodes are listed beside it.
    nodes = [ClusterNode(host, port) for host, port in address.nodes[1:]]
    return RedisCluster(url=address.node_url(0), startup_nodes=nodes, decode_responses=False, **options)


@functools.cache
def _client(url: str, timeout: float) -> Client:
    if is_cluster_url(url):
        return cast(Client, _cluster_client(url, timeout))
    options = pool_kwargs(timeout)
    # A rediss:// or unix:// URL keeps redis-py's own connection class (no breaker there).
    if not url.startswith("redis://"):
        options.pop("connection_class")
    pool = redis.ConnectionPool.from_url(url, decode_responses=False, **options)
    return redis.Redis(connection_pool=pool)


@functools.cache
def registered_script(client: Client, source: str) -> Any:
    """``client.register_script(source)``, once per client and script (EVALSHA, loaded on first use).

    Keyed by the client object itself, not ``id()``: a replaced client (tests drop the cached one)
    never gets a script bound to its predecessor.
    """
    return client.register_script(source)


_loaded_everywhere: set[tuple[int, str]] = set()
_loaded_lock = threading.Lock()


def queue_script(pipe: Any, script: Any, keys: Sequence[Any], args: Sequence[Any]) -> None:
    """``script(keys=..., args=..., client=pipe)``, also on a cluster pipeline.

    redis-py's cluster pipeline refuses its ``evalsha`` method (and so ``Script`` calls), but routes
    a queued ``EVALSHA`` by its keys like any command, sending each node its commands in parallel.
    The script is loaded on every primary first (once per client); a node that lost it (restarted)
    answers NOSCRIPT, :func:`pipeline_execute` forgets the loads and the next call loads again.
    """
    if not isinstance(pipe, ClusterPipeline):
        script(keys=keys, args=args, client=pipe)
        return
    client = script.registered_client
    loaded = (id(client), script.sha)
    if loaded not in _loaded_everywhere:
        client.script_load(script.script)  # a cluster sends SCRIPT LOAD to every primary
        with _loaded_lock:
            _loaded_everywhere.add(loaded)
    pipe.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)


def pipeline_execute(pipe: Any) -> list[Any]:
    """``pipe.execute()``; a NOSCRIPT answer makes :func:`queue_script` load its scripts again."""
    try:
        return list(pipe.execute())
    except redis.exceptions.NoScriptError:
        with _loaded_lock:
            _loaded_everywhere.clear()
        raise


ScriptCall = tuple[Any, Sequence[Any], Sequence[Any]]  # (registered script, keys, args)


def _pack_evalsha(calls: Sequence[ScriptCall]) -> list[bytes]:
    """The calls as RESP, in the chunks ``send_packed_command`` writes (a list: it iterates it)."""
    return [b"".join([pack_command(("EVALSHA", script.sha, len(keys), *keys, *args)) for script, keys, args in calls])]


def _evalsha_on_one_connection(client: redis.Redis, calls: Sequence[ScriptCall]) -> list[Any]:
    """EVALSHA of every call in one write on one pooled connection, the replies read in order.

    What ``client.pipeline(transaction=False)`` sends and reads, without its per-command machinery
    (the command stack, the retry wrapper, the response callbacks, the per-argument packing): on the
    score update's two calls that machinery cost as much CPU as the round trips themselves. The
    connection is the pool's (its circuit breaker, timeouts and health check included: its own
    ``send_packed_command`` and ``read_response`` run). An error reply is returned in its place, as
    the pipeline's ``raise_on_error=False`` does; any other failure (timeout, connection lost,
    interrupted) disconnects the connection, whose replies are then unknown, before it goes back.
    """
    pool = client.connection_pool
    conn = pool.get_connection()
    try:
        conn.send_packed_command(_pack_evalsha(calls))
        replies: list[Any] = []
        for _call in calls:
            try:
                replies.append(conn.read_response())
            except redis.ResponseError as exc:
                replies.append(exc)
    except BaseException:
        conn.disconnect()
        raise
    finally:
        pool.release(conn)
    return replies


def script_run(client: Client, script: Any, keys: Sequence[Any], args: Sequence[Any]) -> Any:
    """``script(keys=keys, args=args)`` in one round trip (see :func:`scripts_run`)."""
    if is_cluster(client):
        return script(keys=keys, args=args)
    return scripts_run(client, [(script, keys, args)])[0]


def source_run(client: Client, source: str, keys: Sequence[Any], args: Sequence[Any]) -> Any:
    """The Lua ``source``, registered once per client (:func:`registered_script`), run by :func:`script_run`."""
    return script_run(client, registered_script(client, source), keys, args)


def scripts_run(client: Client, calls: Sequence[ScriptCall]) -> list[Any]:
    """Run several scripts in ONE round trip (a pipeline of EVALSHA) and return their replies.

    redis-py's own pipelined scripts cost a second round trip on every execute (SCRIPT EXISTS before
    the pipeline): here a script Redis does not know (restarted, SCRIPT FLUSH) is loaded and run on
    its own afterwards, which only happens then. Other errors are raised as redis-py raises them.
    """
    if is_cluster(client):  # routed per key, scripts loaded on every primary
        pipe = client.pipeline(transaction=False)
        for script, keys, args in calls:
            queue_script(pipe, script, keys, args)
        return pipeline_execute(pipe)
    replies = _evalsha_on_one_connection(client, calls)
    for i, reply in enumerate(replies):
        if isinstance(reply, redis.exceptions.NoScriptError):
            script, keys, args = calls[i]
            replies[i] = script(keys=keys, args=args)  # loads it, then runs it
        elif isinstance(reply, Exception):
            raise reply
    return replies


def client_for(url: str, timeout: float) -> Client:
    """The process's pooled client for ``url`` (one per URL and timeout)."""
    return _client(url, timeout)


def get_redis() -> Client | None:
    url = settings.REDIS_URL
    if not url:
        return None
    return _client(url, settings.REDIS_SOCKET_TIMEOUT)


def redis_state() -> str | None:
    """ "ok", "degraded" (circuit open or no answer) or None without Redis; never blocks long."""
    client = get_redis()
    if client is None:
        return None
    if any(breaker_for(server).is_open for server, _db in servers_of(client)):
        return "degraded"
    try:
        client.ping()
    except REDIS_ERRORS:
        return "degraded"
    return "ok"


def servers_of(client: Client) -> list[tuple[str, int]]:
    """("host:port", db) of every server behind ``client`` (each node of a cluster, db 0)."""
    if is_cluster(client):
        return [(f"{node.host}:{node.port}", 0) for node in cast(RedisCluster, client).get_nodes()]
    kwargs = client.connection_pool.connection_kwargs
    return [(f"{kwargs.get('host')}:{kwargs.get('port')}", int(kwargs.get("db") or 0))]


def is_cluster(client: object) -> bool:
    """``isinstance(client, RedisCluster)``, remembered per class: redis-py's ``RedisCluster`` is a
    ``typing.Protocol`` subclass, whose ``isinstance`` runs Python code on every call (about 0.5 us,
    several times per score update)."""
    cls = type(client)
    known = _CLUSTER_CLASSES.get(cls)
    if known is None:
        known = _CLUSTER_CLASSES[cls] = issubclass(cls, RedisCluster)
    return known


_CLUSTER_CLASSES: dict[type, bool] = {}


def pubsub_url(attempt: int = 0) -> str:
    """Where a subscriber connects: ``REDIS_URL``, or one node of the cluster (the ``attempt``-th,
    so a subscriber whose node is down moves on to the next). Classic PUBLISH reaches every node."""
    url: str = settings.REDIS_URL
    return cluster_address(url).node_url(attempt) if is_cluster_url(url) else url


class ClusterConnectionFactory(ConnectionFactory):
    """django-redis on a Redis Cluster: its ``DefaultClient`` over the process's ``RedisCluster``.

    django-redis has no cluster client of its own (jazzband/django-redis#606), but its connection
    factory is pluggable per cache (``OPTIONS["CONNECTION_FACTORY"]``): this one hands it the shared
    cluster client, whose single-key commands (all the cache is used for: get, set, add, incr,
    delete) route by slot. ``LOCATION`` must be a one-item list (django-redis splits a string at
    commas into several servers).
    """

    def connect(self, url: str) -> Any:
        return client_for(url, float(self.options.get("SOCKET_TIMEOUT", settings.REDIS_SOCKET_TIMEOUT)))

    def disconnect(self, connection: Any) -> None:
        """The client is shared by the process: nothing to close per cache."""
