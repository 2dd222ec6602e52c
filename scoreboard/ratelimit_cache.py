"""The cache behind django-ratelimit's counters: one Redis round trip per counter instead of two.

django-ratelimit counts a hit as ``cache.add(key, 1, window)`` and, when the key already existed,
``cache.incr(key)``: two round trips (SET NX, then django-redis' EVAL of an INCR script) on every
counter, three counters per score update. This backend gives the same answers in one: ``add``
only remembers the key, value and timeout (in this thread) and answers "already there", and the
``incr`` that django-ratelimit then sends runs one script that creates the key with that value and
expiry if it is missing (returning the value, as a successful ``add`` would have meant) or adds
``delta`` to it. Fixed windows, key names (``KEY_PREFIX:1:rl:...``, as django-redis writes them) and
counts are unchanged; an ``add`` not followed by an ``incr`` of the same key is applied on its own.

``LOCATION`` is the Redis URL (``OPTIONS["SOCKET_TIMEOUT"]`` its timeout); with ``REDIS_URL``'s value
it shares the process's pooled client (``scoreboard.redis``). Redis errors surface as
``REDIS_ERRORS`` to ``scoreboard.ratelimit``, which falls back as configured. Only the operations
django-ratelimit uses are implemented, and it is meant for the rate-limit cache alias only
(``RATELIMIT_USE_CACHE``).
"""

from __future__ import annotations

import threading
from typing import Any

from django.core.cache.backends.base import DEFAULT_TIMEOUT, BaseCache

from scoreboard.redis import client_for

COUNTER_MAX_SECONDS = 3600

# KEYS: counter. ARGV: value to create it with ('' = do not create), expiry seconds, delta.
# Returns the count, or false when the key is missing and nothing creates it (incr of a missing key).
_HIT = """
if ARGV[1] ~= '' then
  if redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2], 'NX') then return tonumber(ARGV[1]) end
elseif redis.call('EXISTS', KEYS[1]) == 0 then
  return false
end
return redis.call('INCRBY', KEYS[1], ARGV[3])
"""


class RateLimitCache(BaseCache):
    def __init__(self, location: str, params: dict[str, Any]) -> None:
        super().__init__(params)
        if not location:
            raise ValueError("RateLimitCache needs LOCATION (a Redis URL)")
        self._location = location
        self._timeout = float(params.get("OPTIONS", {}).get("SOCKET_TIMEOUT", 0.5))
        self._pending = threading.local()
        self._scripts: dict[int, Any] = {}

    def _client(self) -> Any:
        return client_for(self._location, self._timeout)

    def _hit(self, client: Any) -> Any:
        script = self._scripts.get(id(client))
        if script is None:
            script = self._scripts[id(client)] = client.register_script(_HIT)
        return script

    def _seconds(self, timeout: float | object | None) -> int | None:
        """Expiry in seconds from now (BaseCache.get_backend_timeout answers an absolute time)."""
        if timeout is DEFAULT_TIMEOUT:
            timeout = self.default_timeout
        if timeout is None:
            return None
        return max(1, int(timeout))  # type: ignore[call-overload]

    def _flush_pending(self) -> None:
        """An add that no incr followed (e.g. RATELIMIT_ENABLE toggled between): apply it now."""
        pending = getattr(self._pending, "add", None)
        if pending is not None:
            self._pending.add = None
            key, value, timeout = pending
            self._client().set(key, value, ex=timeout, nx=True)

    def add(self, key: str, value: Any, timeout: float | None = DEFAULT_TIMEOUT, version: int | None = None) -> bool:
        self._flush_pending()
        seconds = self._seconds(timeout) or COUNTER_MAX_SECONDS  # a counter always expires
        self._pending.add = (self.make_and_validate_key(key, version=version), int(value), seconds)
        return False  # "it was there": django-ratelimit then calls incr, which creates it if it was not

    def incr(self, key: str, delta: int = 1, version: int | None = None) -> int:
        full_key = self.make_and_validate_key(key, version=version)
        pending = getattr(self._pending, "add", None)
        self._pending.add = None
        if pending is not None and pending[0] != full_key:
            self._pending.add = pending
            self._flush_pending()
            pending = None
        initial, timeout = (pending[1], pending[2]) if pending else ("", 0)
        client = self._client()
        count = self._hit(client)(keys=[full_key], args=[initial, timeout, delta])
        if count is None:
            raise ValueError(f"Key '{key}' not found.")
        return int(count)

    def get(self, key: str, default: Any = None, version: int | None = None) -> Any:
        self._flush_pending()
        raw = self._client().get(self.make_and_validate_key(key, version=version))
        return default if raw is None else int(raw)

    def set(self, key: str, value: Any, timeout: float | None = DEFAULT_TIMEOUT, version: int | None = None) -> None:
        self._client().set(self.make_and_validate_key(key, version=version), int(value), ex=self._seconds(timeout))

    def delete(self, key: str, version: int | None = None) -> bool:
        return bool(self._client().delete(self.make_and_validate_key(key, version=version)))

    def clear(self) -> None:
        self._pending.add = None
        client = self._client()
        keys = list(client.scan_iter(match=self.make_key("*"), count=1000))
        if keys:
            client.delete(*keys)
