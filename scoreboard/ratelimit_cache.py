"""The cache behind django-ratelimit's counters: one Redis round trip per counter instead of two.

django-ratelimit counts a hit as ``cache.add(key, 1, window)`` and, when the key already existed,
``cache.incr(key)``: two round trips (SET NX, then django-redis' EVAL of an INCR script) on every
counter, three counters per score update. This backend gives the same answers in one: ``add``
only remembers the key, value and timeout (in this thread) and answers "already there", and the
``incr`` that django-ratelimit then sends runs one script that creates the key with that value and
expiry if it is missing (returning the value, as a successful ``add`` would have meant) or adds
``delta`` to it. Fixed windows, key names (``KEY_PREFIX:1:rl:...``, as django-redis writes them) and
counts are unchanged; an ``add`` not followed by an ``incr`` of the same key is applied on its own.
Only ``add``, ``incr`` and ``get`` (what django-ratelimit calls) are implemented, plus ``hit_chain``:
several counters of one request in one round trip, each counted only while the ones before it are
within their limits (a score update's per-player and global limits, ``scoreboard.ratelimit``).

``LOCATION`` is the Redis URL (``OPTIONS["SOCKET_TIMEOUT"]`` its timeout); with ``REDIS_URL``'s value
it shares the process's pooled client (``scoreboard.redis``). Redis errors surface as
``REDIS_ERRORS`` to ``scoreboard.ratelimit``, which falls back as configured. It is meant for the
rate-limit cache alias only (``RATELIMIT_USE_CACHE``).
"""

from __future__ import annotations

import threading
from typing import Any

from django.core.cache.backends.base import DEFAULT_TIMEOUT, BaseCache

from scoreboard.redis import client_for, source_run

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


# KEYS: counters, in order. ARGV: expiry seconds, then each counter's limit. Counts each key (created
# with 1 and the expiry when missing) until one is over its limit; the keys after it are not counted.
_HIT_CHAIN = """
local out = {}
for i = 1, #KEYS do
  local count
  if redis.call('SET', KEYS[i], 1, 'EX', ARGV[1], 'NX') then count = 1 else count = redis.call('INCR', KEYS[i]) end
  out[i] = count
  if count > tonumber(ARGV[i + 1]) then break end
end
return out
"""


# The chain's counting, as a prefix of another script (``with_counters``). KEYS: the counters, then the
# other script's keys. ARGV: number of counters, expiry seconds, each counter's limit, then the other
# script's arguments. Returns {counts} when a counter is over its limit (the other script does not
# run), else {counts, the other script's reply}.
_COUNTERS_PREFIX = """
local n = tonumber(ARGV[1])
local counts = {}
for i = 1, n do
  local count
  if redis.call('SET', KEYS[i], 1, 'EX', ARGV[2], 'NX') then count = 1 else count = redis.call('INCR', KEYS[i]) end
  counts[i] = count
  if count > tonumber(ARGV[2 + i]) then return {counts} end
end
local inner_keys, inner_args = {}, {}
for i = n + 1, #KEYS do inner_keys[#inner_keys + 1] = KEYS[i] end
for i = n + 3, #ARGV do inner_args[#inner_args + 1] = ARGV[i] end
return {counts, inner(inner_keys, inner_args)}
"""


def with_counters(body: str) -> str:
    """``body`` (a script of its own, reading KEYS and ARGV) preceded by ``hit_chain``'s counting in
    the same call: one round trip for a request's rate limits and the work they guard (the score
    update's limits, replay pre-filter and fraud window). ``body``'s KEYS, ARGV and reply are passed
    through unchanged; it does not run when a counter is over its limit. See ``_COUNTERS_PREFIX``
    for the layout."""
    return "local function inner(KEYS, ARGV)\n" + body + "\nend\n" + _COUNTERS_PREFIX


FULL_KEYS_KEPT = 8192


class RateLimitCache(BaseCache):
    def __init__(self, location: str, params: dict[str, Any]) -> None:
        super().__init__(params)
        if not location:
            raise ValueError("RateLimitCache needs LOCATION (a Redis URL)")
        self._location = location
        self._timeout = float(params.get("OPTIONS", {}).get("SOCKET_TIMEOUT", 0.5))
        self._pending = threading.local()
        self._full: dict[str, str] = {}  # counter key -> its Redis name (make_and_validate_key), per process

    def _client(self) -> Any:
        return client_for(self._location, self._timeout)

    def _take_pending(self) -> tuple[str, int, int] | None:
        pending: tuple[str, int, int] | None = getattr(self._pending, "add", None)
        self._pending.add = None
        return pending

    def _flush_pending(self) -> None:
        """An add that no incr followed (e.g. RATELIMIT_ENABLE toggled between): apply it now."""
        pending = self._take_pending()
        if pending is not None:
            key, value, seconds = pending
            self._client().set(key, value, ex=seconds, nx=True)

    def add(self, key: str, value: Any, timeout: float | None = DEFAULT_TIMEOUT, version: int | None = None) -> bool:
        self._flush_pending()
        if timeout is DEFAULT_TIMEOUT:
            timeout = self.default_timeout
        # In seconds from now (BaseCache.get_backend_timeout would answer an absolute time); a counter
        # always expires.
        seconds = max(1, int(timeout)) if timeout else COUNTER_MAX_SECONDS
        self._pending.add = (self.make_and_validate_key(key, version=version), int(value), seconds)
        return False  # "it was there": django-ratelimit then calls incr, which creates it if it was not

    def incr(self, key: str, delta: int = 1, version: int | None = None) -> int:
        full_key = self.make_and_validate_key(key, version=version)
        pending = self._take_pending()
        if pending is not None and pending[0] != full_key:  # an add of another key: apply it on its own
            self._pending.add = pending
            self._flush_pending()
            pending = None
        initial, seconds = (pending[1], pending[2]) if pending else ("", 0)
        client = self._client()
        count = source_run(client, _HIT, [full_key], [initial, seconds, delta])
        if count is None:
            raise ValueError(f"Key '{key}' not found.")
        return int(count)

    def hit_chain(self, keys: list[str], limits: list[int], timeout: int) -> list[int]:
        """Count one hit on each key in one round trip, stopping after the first one over its limit.

        Returns the counts of the keys counted (fewer than ``keys`` when one was over its limit).
        """
        self._flush_pending()
        full_keys = [self._full_key(key) for key in keys]
        seconds = max(1, int(timeout))
        client = self._client()
        counts = source_run(client, _HIT_CHAIN, full_keys, [seconds, *limits])
        return [int(c) for c in counts]

    def full_keys(self, keys: list[str]) -> list[str]:
        """The Redis names of these counters (for a script that counts them, ``with_counters``)."""
        self._flush_pending()
        return [self._full_key(key) for key in keys]

    def _full_key(self, key: str) -> str:
        """``make_and_validate_key(key)``, remembered: a counter's key lives for its window, and this
        cache's prefix, version and key function never change after it is built."""
        full = self._full.get(key)
        if full is None:
            full = self.make_and_validate_key(key)
            if len(self._full) >= FULL_KEYS_KEPT:
                self._full.clear()
            self._full[key] = full
        return full

    @property
    def location(self) -> str:
        return self._location

    def get(self, key: str, default: Any = None, version: int | None = None) -> Any:
        self._flush_pending()
        raw = self._client().get(self.make_and_validate_key(key, version=version))
        return default if raw is None else int(raw)
