"""Open WebSockets (and SSE streams) per client address, counted across every ASGI process, capped.

nginx's ``limit_conn`` capped the sockets one address holds open while every socket went through
nginx. On the kernel-balanced path (``SO_REUSEPORT``, or an L4 load balancer in front of the
realtime pods) no proxy sees the connections, so the processes count them together in Redis:

- ``sb:rt:conns:<address>`` is a hash with one field per process (a random token per process
  start) holding how many sockets of that address the process has open, and ``<token>:t`` the
  last time the process confirmed it. A handshake runs one script on that single key (Redis
  Cluster-safe): it drops the fields of processes that have not confirmed for
  ``REALTIME_WS_CAP_STALE_SECONDS`` (a process that died without closing its sockets), adds up the
  rest and, under ``REALTIME_WS_PER_ADDRESS``, counts the new socket.
- Each process rewrites its own counts every ``REALTIME_WS_CAP_HEARTBEAT_SECONDS`` from its local
  registry (one pipelined command per address it holds), so a count that missed a decrement (Redis
  was down at the close) is corrected, and the key expires when nobody holds it.
- The Redis calls go through the project's client (``scoreboard/redis.py``: short timeouts, the
  circuit breaker). While Redis is unusable, and in the embedded default (no Redis), each process
  enforces the cap on its own sockets only: never stricter than the shared count, and watching the
  board stays possible (as the handshake limit does).

A refused handshake gets HTTP 429 with the JSON error envelope where the server supports the
ASGI WebSocket denial response (uvicorn), otherwise a close before accept (HTTP 403).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import time
from collections import Counter
from collections.abc import MutableMapping
from typing import Any

import orjson
from django.conf import settings

from scoreboard import metrics
from scoreboard.errors import error_body
from scoreboard.net import client_ip
from scoreboard.redis import REDIS_ERRORS, get_redis, registered_script

logger = logging.getLogger(__name__)
security_log = logging.getLogger("scoreboard.security")

KEY = "sb:rt:conns:{address}"
SCOPE = "websocket_connections"  # the rate-limit metric's scope label
CLOSE_POLICY = 1008

# KEYS[1]: the address's hash. ARGV: this process's token, the cap, now, stale seconds, key ttl.
# Returns the number of sockets open for the address once this one is counted, or -(open) when refused.
_ACQUIRE = """
local now = tonumber(ARGV[3])
local stale = tonumber(ARGV[4])
local fields = redis.call('HGETALL', KEYS[1])
local counts, seen = {}, {}
for i = 1, #fields, 2 do
  local name, value = fields[i], fields[i + 1]
  if string.sub(name, -2) == ':t' then seen[string.sub(name, 1, -3)] = tonumber(value)
  else counts[name] = tonumber(value) end
end
local total = 0
for token, count in pairs(counts) do
  local at = seen[token]
  if token ~= ARGV[1] and (at == nil or now - at > stale) then
    redis.call('HDEL', KEYS[1], token, token .. ':t')
  else
    total = total + count
  end
end
if total >= tonumber(ARGV[2]) then return -total end
redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
redis.call('HSET', KEYS[1], ARGV[1] .. ':t', ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[5])
return total + 1
"""

# KEYS[1]: the address's hash. ARGV: this process's token. One socket of this process closed.
_RELEASE = """
local left = redis.call('HINCRBY', KEYS[1], ARGV[1], -1)
if left <= 0 then redis.call('HDEL', KEYS[1], ARGV[1], ARGV[1] .. ':t') end
return left
"""


class ConnectionCap:
    """This process's open sockets by address, and the shared count in Redis."""

    def __init__(self) -> None:
        self.token = f"{os.getpid()}-{secrets.token_hex(6)}"
        self.local: Counter[str] = Counter()
        # Addresses whose shared count may be off (a release that failed): the heartbeat rewrites them.
        self.dirty: set[str] = set()
        self._heartbeat: asyncio.Task[None] | None = None

    # -- in a worker thread ------------------------------------------------------------------
    def _acquire_shared(self, address: str, cap: int) -> int | None:
        """The address's open sockets counting this one, negative when refused; None: Redis unusable."""
        client = get_redis()
        if client is None:
            return None
        try:
            script = registered_script(client, _ACQUIRE)
            args = [self.token, cap, int(time.time()), settings.REALTIME_WS_CAP_STALE_SECONDS, self._ttl()]
            return int(script(keys=[KEY.format(address=address)], args=args))
        except REDIS_ERRORS as exc:
            logger.warning("realtime: the shared connection count is unavailable (%s)", type(exc).__name__)
            return None
        except Exception:  # anything else is a bug, logged with its traceback; the handshake never fails for it
            logger.exception("realtime: the shared connection count failed")
            return None

    def _release_shared(self, address: str) -> None:
        client = get_redis()
        if client is None:
            return
        try:
            registered_script(client, _RELEASE)(keys=[KEY.format(address=address)], args=[self.token])
        except Exception:  # Redis unusable (or a bug): the heartbeat rewrites this address's count
            self.dirty.add(address)

    def _ttl(self) -> int:
        return int(settings.REALTIME_WS_CAP_STALE_SECONDS * 2) + 1

    def _rewrite(self, counts: dict[str, int], gone: set[str]) -> bool:
        """Write this process's counts (and drop its fields for ``gone``); False when Redis failed."""
        client = get_redis()
        if client is None:
            return True
        now = int(time.time())
        try:
            pipe = client.pipeline(transaction=False)
            for address, count in counts.items():
                key = KEY.format(address=address)
                pipe.hset(key, mapping={self.token: count, f"{self.token}:t": now})
                pipe.expire(key, self._ttl())
            for address in gone:
                pipe.hdel(KEY.format(address=address), self.token, f"{self.token}:t")
            pipe.execute()
        except REDIS_ERRORS:
            return False
        return True

    # -- event loop --------------------------------------------------------------------------
    async def acquire(self, address: str) -> bool:
        cap = settings.REALTIME_WS_PER_ADDRESS
        if cap <= 0:
            return True
        self._ensure_heartbeat()
        loop = asyncio.get_running_loop()
        shared = await loop.run_in_executor(None, self._acquire_shared, address, cap)
        # Redis unusable (or none): this process's own sockets only.
        allowed = self.local[address] < cap if shared is None else shared > 0
        if allowed:
            self.local[address] += 1
        return allowed

    async def release(self, address: str) -> None:
        self.local[address] -= 1
        if self.local[address] <= 0:
            del self.local[address]
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self._release_shared, address)

    def _ensure_heartbeat(self) -> None:
        if self._heartbeat is None or self._heartbeat.done():
            self._heartbeat = asyncio.get_running_loop().create_task(self._beat(), name="realtime-ws-cap-heartbeat")

    async def _beat(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(settings.REALTIME_WS_CAP_HEARTBEAT_SECONDS)
            counts = dict(self.local)
            gone = {a for a in self.dirty if a not in counts}
            dirty = set(self.dirty)
            try:
                written = await loop.run_in_executor(None, self._rewrite, counts, gone)
            except Exception:  # never let the heartbeat die: the next beat tries again
                logger.exception("realtime: connection count heartbeat failed")
                continue
            if written:
                self.dirty -= dirty


_cap: ConnectionCap | None = None


def get_cap() -> ConnectionCap:
    global _cap
    if _cap is None:
        _cap = ConnectionCap()
    return _cap


def scope_address(scope: MutableMapping[str, Any]) -> str | None:
    """The client address of a WebSocket scope, as the handshake limit reads it (trusted proxies only)."""
    from scoreboard.ratelimit import ip_key

    client = scope.get("client") or (None, None)
    forwarded = next((v for k, v in scope.get("headers") or [] if k == b"x-forwarded-for"), b"")
    ip = client_ip({"REMOTE_ADDR": client[0], "HTTP_X_FORWARDED_FOR": forwarded.decode("latin-1")})
    return ip_key(ip) if ip else None


def _error_body() -> bytes:
    message = "Too many WebSocket connections open from this address; close one first."
    details = {"scope": SCOPE, "limit": settings.REALTIME_WS_PER_ADDRESS}
    return orjson.dumps(error_body("too_many_connections", message, details))


class WebSocketConnectionCap:
    """ASGI middleware: a connection over its address's open-connection cap is refused before routing.

    WebSockets always count; on the ``http`` side only requests for ``stream_paths`` (the SSE
    stream, which stays open like a socket) do, under the same cap and the same shared count: an
    address cannot hold more open by mixing streams and sockets. A refused stream gets the same 429.
    """

    def __init__(self, app: Any, stream_paths: frozenset[str] = frozenset()) -> None:
        self.app = app
        self.stream_paths = stream_paths

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        kind = scope["type"]
        counted = kind == "websocket" or (kind == "http" and scope.get("path") in self.stream_paths)
        if not counted or settings.REALTIME_WS_PER_ADDRESS <= 0:
            await self.app(scope, receive, send)
            return
        address = scope_address(scope)
        if address is None:
            await self.app(scope, receive, send)
            return
        cap = get_cap()
        if not await cap.acquire(address):
            metrics.RATE_LIMIT_TRIGGERS.labels(scope=SCOPE).inc()
            security_log.info("rate limit %s exceeded (limit %d open)", SCOPE, settings.REALTIME_WS_PER_ADDRESS)
            await (_refuse(scope, receive, send) if kind == "websocket" else _refuse_stream(send))
            return
        try:
            await self.app(scope, receive, send)
        finally:
            with contextlib.suppress(Exception):  # a failed release is corrected by the heartbeat
                await asyncio.shield(cap.release(address))


REFUSED_HEADERS = [(b"content-type", b"application/json"), (b"retry-after", b"10")]


async def _refuse_stream(send: Any) -> None:
    await send({"type": "http.response.start", "status": 429, "headers": REFUSED_HEADERS})
    await send({"type": "http.response.body", "body": _error_body()})


async def _refuse(scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
    message = await receive()
    if message.get("type") != "websocket.connect":
        return
    if "websocket.http.response" in (scope.get("extensions") or {}):
        await send({"type": "websocket.http.response.start", "status": 429, "headers": REFUSED_HEADERS})
        await send({"type": "websocket.http.response.body", "body": _error_body()})
    else:
        await send({"type": "websocket.close", "code": CLOSE_POLICY})
