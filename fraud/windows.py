"""The recent history the fraud rules read: per-player attempts, accounts per IP, rejected tokens.

With Redis (production) each window is a small capped structure with a TTL, so memory stays bounded
by the players active in the last hour:

- ``sb:{gate}:fraud:p:<user>``: a list of the player's last ``WINDOW_SIZE`` attempts (applied or blocked),
  newest first, ~60 bytes each; expires ``WINDOW_TTL_SECONDS`` after the last attempt.
- ``sb:{gate}:fraud:ip:<ip>``: a sorted set of the players who scored from the address in the last hour
  (score = last time), capped at ``IP_ACCOUNTS_KEPT`` members.

Reading and appending happen in one script call (atomic, one round trip), so two concurrent attempts
of one player each see the other. Without Redis (the embedded default, or Redis down) the window is read from
``score_history`` (applied actions) and ``fraud_logs`` (blocked attempts).

Rejected action tokens are counted per player and per address in fixed five-minute buckets
(``sb:{gate}:fraud:rej:...``, read in the same round trip as the window), or in the local-memory cache in
the embedded default. One attempt therefore costs the fraud engine a single Redis round trip. Every key carries the gate
hash tag (``scoreboard.redis.gate_key``): the script touches one slot on a Redis Cluster.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import hashlib
import ipaddress
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import redis
from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.db.models import Count, Q, Sum

from accounts.cards import with_card
from fraud.models import FraudLog
from fraud.rules import SHARE_UNIT, TOTAL, Attempt, ClusterView
from scoreboard.ratelimit_cache import with_counters
from scoreboard.redis import REDIS_ERRORS, gate_key, get_redis, registered_script, script_run, source_run
from scores.models import ScoreHistory

logger = logging.getLogger(__name__)

WINDOW_SIZE = 20
WINDOW_TTL_SECONDS = 3600
IP_WINDOW_SECONDS = 3600
IP_ACCOUNTS_KEPT = 100
ACTION_ID_PREFIX = 12
REJECTION_BUCKET_SECONDS = 300
REJECTION_BUCKETS = 2  # the current and the previous bucket: the last 5-10 minutes


@dataclass(frozen=True)
class WindowView:
    recent: list[Attempt]  # newest first, without the attempt just recorded
    accounts_on_ip: int
    source: str  # "redis" or "database"
    rejected_tokens_player: int = 0
    rejected_tokens_ip: int = 0
    # True when one of the caller's "once" keys was already there: a repeat, nothing was recorded.
    repeat: bool = False
    # (window seconds, action type or rules.TOTAL) -> (points, submissions), this attempt included;
    # for TOTAL the "points" are thousandths of each type's maximum increment (``max_shares``).
    velocity: dict[tuple[int, str], tuple[int, int]] = field(default_factory=dict)
    clusters: list[ClusterView] = field(default_factory=list)
    # The attempt's action id was already in the window (a retry after a 503 or a timeout): it was
    # not recorded or counted a second time.
    retry: bool = False


def _player_key(user_id: str) -> str:
    return gate_key("fraud", "p", user_id)


def _ip_key(ip: str) -> str:
    return gate_key("fraud", "ip", ip)


@functools.lru_cache(maxsize=4096)
def subnet_of(ip: str) -> str:
    """The address' /24 (IPv4) or /48 (IPv6): one campus, office or carrier pool."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    prefix = 24 if address.version == 4 else 48
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))


@functools.lru_cache(maxsize=4096)
def fingerprint_of(ip: str, user_agent: str) -> str:
    """A device fingerprint without cookies: the user agent on the address' subnet."""
    digest = hashlib.blake2b(user_agent.encode(), digest_size=6).hexdigest()
    return f"{digest}@{subnet_of(ip)}"


def encode(attempt: Attempt) -> bytes:
    return (
        f"{round(attempt.submitted_at * 1000)}|{attempt.action_timestamp}|{attempt.score_increment}|"
        f"{attempt.action_type}|{attempt.action_id[:ACTION_ID_PREFIX]}"
    ).encode()


def decode(raw: bytes) -> Attempt | None:
    try:
        submitted_ms, action_ts, increment, action_type, action_id = raw.decode().split("|", 4)
        return Attempt(
            submitted_at=int(submitted_ms) / 1000,
            action_timestamp=int(action_ts),
            score_increment=int(increment),
            action_type=action_type,
            action_id=action_id,
        )
    except (UnicodeDecodeError, ValueError):
        return None


def attempt_record_and_load(
    *,
    user_id: str,
    ip: str | None,
    attempt: Attempt,
    once_keys: Sequence[str] = (),
    once_ttl: int = 0,
    user_agent: str = "",
    increment_tail: float = 0.5,
    counters: Any = None,
    card: Any = None,
) -> WindowView:
    """Append ``attempt`` to the player's window and return what was there before, plus the IP's count,
    the player's velocity in each budget window and the clusters (address, subnet, fingerprint).

    ``once_keys`` (Redis keys, kept ``once_ttl`` seconds) make the attempt count once: if any of them
    is already set the attempt is a repeat — nothing is recorded and ``repeat`` is True. The score
    service passes its replay pre-filter keys (nonce, action id) so that the pre-filter and the
    window share one round trip. Without Redis there is no pre-filter: never a repeat.
    ``increment_tail`` is the population's upper-tail share of this increment (``fraud.population``);
    the clusters sum ``-ln`` of it over their members' submissions.
    ``counters`` (``scoreboard.ratelimit.PendingLimits``): the request's rate-limit hits, counted
    first in the same script call (``with_counters``); over a limit, nothing is recorded and the
    refusal (429) is raised. Without Redis they are counted the separate way before the window.
    ``card`` (``accounts.cards.CardCheck``): the player's card, checked (or filled) first in the same
    call; no usable card raises ``accounts.cards.CardMiss`` before anything is counted or recorded.
    """
    client = get_redis()
    if client is not None:
        try:
            return _from_redis(
                client,
                user_id=user_id,
                ip=ip,
                attempt=attempt,
                once_keys=once_keys,
                once_ttl=once_ttl,
                user_agent=user_agent,
                increment_tail=increment_tail,
                counters=counters,
                card=card,
            )
        except REDIS_ERRORS:
            logger.warning("redis unavailable; fraud windows read from the database")
    if counters is not None:
        counters.flush()  # the limits still come before the fraud engine
    return _from_database(user_id=user_id, ip=ip, now=attempt.submitted_at, attempt=attempt)


# KEYS: 1 the player's list, 2 the address' account set (a placeholder without an address), 3 the
# player's velocity hash, 4 the address' cluster buckets, 5/6 the subnet's account set and buckets,
# 7/8 the fingerprint's, then the "once" keys, then the rejection buckets.
# ARGV: 1 encoded attempt, 2 window size, 3 window TTL, 4 user id, 5 submitted at, 6 address cutoff,
# 7 accounts kept, 8 address TTL, 9 "1" when there is an address, 10 number of once keys, 11 their
# TTL, 12 action type, 13 increment, 14 action id prefix, 15 -ln(increment tail), 16 cluster bucket
# seconds, 17 cluster buckets, 18 number of velocity windows, then per window its length and bucket,
# then the increment in thousandths of the type's maximum (what the all-types budget counts: "+").
# With once keys, each is SET NX first; if any already existed the attempt is a repeat and nothing
# is recorded or read. An action id already in the player's list is a retry: read, not recorded.
# One script call (atomic, one round trip) instead of a MULTI.
_RECORD_AND_LOAD = """
local once = tonumber(ARGV[10])
local fresh = 1
for i = 9, 8 + once do
  if not redis.call('SET', KEYS[i], '1', 'NX', 'EX', ARGV[11]) then fresh = 0 end
end
if fresh == 0 then return {{}, {}, 0, 0, {}, {}, 0} end
local rejections = {}
for i = 9 + once, #KEYS do rejections[#rejections + 1] = tonumber(redis.call('GET', KEYS[i]) or '0') or 0 end
local size = tonumber(ARGV[2])
local now = tonumber(ARGV[5])
local atype = ARGV[12]
local inc = tonumber(ARGV[13])
local recent = redis.call('LRANGE', KEYS[1], 0, size - 1)
local record = 1
local suffix = '|' .. ARGV[14]
if #ARGV[14] > 0 then
  for _, e in ipairs(recent) do
    if string.sub(e, -#suffix) == suffix then record = 0 break end
  end
end
if record == 1 then
  redis.call('LPUSH', KEYS[1], ARGV[1])
  redis.call('LTRIM', KEYS[1], 0, size - 1)
end
redis.call('EXPIRE', KEYS[1], ARGV[3])
-- velocity: fields "<window>|<bucket>|<type or +>|<p or n>"; for "+" (all types) p counts thousandths
-- of each type's maximum increment, not points: a lap time in ms and a level's points do not add up.
local nwin = tonumber(ARGV[18])
local share = tonumber(ARGV[19 + 2 * nwin])
local lens, sizes, current = {}, {}, {}
for w = 1, nwin do
  lens[w] = tonumber(ARGV[17 + 2 * w])
  sizes[w] = tonumber(ARGV[18 + 2 * w])
  current[w] = math.floor(now / sizes[w])
  if record == 1 then
    for _, t in ipairs({atype, '+'}) do
      local f = w .. '|' .. current[w] .. '|' .. t .. '|'
      redis.call('HINCRBY', KEYS[3], f .. 'p', t == '+' and share or inc)
      redis.call('HINCRBY', KEYS[3], f .. 'n', 1)
    end
  end
end
local sums = {}
for i = 1, 4 * nwin do sums[i] = 0 end
local all = redis.call('HGETALL', KEYS[3])
for i = 1, #all, 2 do
  local w, b, t, k = string.match(all[i], '^(%d+)|(%d+)|(.+)|(%a)$')
  w = tonumber(w)
  b = tonumber(b)
  if w == nil or lens[w] == nil or b <= current[w] - lens[w] / sizes[w] then
    redis.call('HDEL', KEYS[3], all[i])
  else
    local slot = 4 * (w - 1) + (t == '+' and 2 or 0) + (k == 'p' and 1 or 2)
    if t == atype or t == '+' then sums[slot] = sums[slot] + tonumber(all[i + 1]) end
  end
end
redis.call('EXPIRE', KEYS[3], ARGV[3])
-- clusters: an account set (score = last time) and 5-minute buckets of submissions and tail sums
local cbucket = tonumber(ARGV[16])
local ckept = tonumber(ARGV[17])
local function cluster(zkey, bkey)
  if record == 1 then
    redis.call('ZADD', zkey, now, ARGV[4])
    redis.call('ZREMRANGEBYSCORE', zkey, '-inf', ARGV[6])
    redis.call('ZREMRANGEBYRANK', zkey, 0, -(tonumber(ARGV[7]) + 1))
    redis.call('EXPIRE', zkey, ARGV[8])
  end
  local accounts = redis.call('ZCARD', zkey)
  local b = math.floor(now / cbucket)
  if record == 1 then
    redis.call('HINCRBY', bkey, b .. '|n', 1)
    redis.call('HINCRBYFLOAT', bkey, b .. '|t', ARGV[15])
    redis.call('EXPIRE', bkey, ARGV[8])
  end
  local n, tail = 0, 0
  local fields = redis.call('HGETALL', bkey)
  for i = 1, #fields, 2 do
    local fb, k = string.match(fields[i], '^(%d+)|(%a)$')
    fb = tonumber(fb)
    if fb == nil or fb <= b - ckept then
      redis.call('HDEL', bkey, fields[i])
    elseif k == 'n' then n = n + tonumber(fields[i + 1])
    else tail = tail + tonumber(fields[i + 1]) end
  end
  return {accounts, n, tostring(tail)}
end
local accounts = 1
local clusters = {}
if ARGV[9] == '1' then
  clusters[1] = cluster(KEYS[2], KEYS[4])
  accounts = clusters[1][1]
  clusters[2] = cluster(KEYS[5], KEYS[6])
  clusters[3] = cluster(KEYS[7], KEYS[8])
end
return {rejections, recent, accounts, 1, sums, clusters, 1 - record}
"""

# The same script behind the request's rate-limit counters (one round trip for both; see
# scoreboard.ratelimit_cache.with_counters): KEYS/ARGV/reply of _RECORD_AND_LOAD are unchanged.
_COUNTED_RECORD_AND_LOAD = with_counters(_RECORD_AND_LOAD)
# Both behind the player's card (accounts.cards.with_card): KEYS/ARGV/reply again unchanged.
_CARDED = {_RECORD_AND_LOAD: with_card(_RECORD_AND_LOAD), _COUNTED_RECORD_AND_LOAD: with_card(_COUNTED_RECORD_AND_LOAD)}

VELOCITY_WINDOWS = ((60, 10), (600, 60), (3600, 300))  # (window, bucket) seconds: rolling to a bucket
CLUSTER_BUCKET_SECONDS = 300
CLUSTER_BUCKETS = IP_WINDOW_SECONDS // CLUSTER_BUCKET_SECONDS


def max_shares(action_type: str, increment: int) -> int:
    """``increment`` in thousandths of the action type's maximum (``rules.SHARE_UNIT``): what the
    all-types velocity counts, so that types measured in different units (points, lap times in ms)
    add up. An unknown type counts as its own maximum."""
    rule = settings.ACTION_TYPES.get(action_type)
    high = int(rule["max_increment"]) if rule else 0
    if high <= 0:
        return SHARE_UNIT
    return round(SHARE_UNIT * max(0, increment) / high)


@functools.lru_cache(maxsize=4096)
def _clusters_of(ip: str | None, user_agent: str) -> tuple[str, tuple[str, ...]]:
    """The address' subnet and the keys of its three clusters (address, subnet, fingerprint)."""
    subnet = subnet_of(ip) if ip else "-"
    fingerprint = fingerprint_of(ip, user_agent) if ip else "-"
    return subnet, (
        gate_key("fraud", "cb", "address", ip or "-"),
        gate_key("fraud", "ca", "subnet", subnet),
        gate_key("fraud", "cb", "subnet", subnet),
        gate_key("fraud", "ca", "fp", fingerprint),
        gate_key("fraud", "cb", "fp", fingerprint),
    )


def _from_redis(
    client: redis.Redis,
    *,
    user_id: str,
    ip: str | None,
    attempt: Attempt,
    once_keys: Sequence[str] = (),
    once_ttl: int = 0,
    user_agent: str = "",
    increment_tail: float = 0.5,
    counters: Any = None,
    card: Any = None,
) -> WindowView:
    player_rejections = _rejection_keys("u", user_id, attempt.submitted_at)
    ip_rejections = _rejection_keys("ip", ip, attempt.submitted_at) if ip else []
    subnet, cluster_keys = _clusters_of(ip, user_agent)
    velocity_args: list[int] = []
    for length, bucket in VELOCITY_WINDOWS:
        velocity_args += [length, bucket]
    tail_score = -math.log(max(1e-6, min(1.0, increment_tail)))
    keys: list[str] = [
        _player_key(user_id),
        _ip_key(ip or "-"),
        gate_key("fraud", "v", user_id),
        *cluster_keys,
        *once_keys,
        *player_rejections,
        *ip_rejections,
    ]
    args: list[Any] = [
        encode(attempt),
        WINDOW_SIZE,
        WINDOW_TTL_SECONDS,
        user_id,
        repr(attempt.submitted_at),
        repr(attempt.submitted_at - IP_WINDOW_SECONDS),
        IP_ACCOUNTS_KEPT,
        IP_WINDOW_SECONDS,
        "1" if ip else "0",
        len(once_keys),
        once_ttl,
        attempt.action_type,
        attempt.score_increment,
        attempt.action_id[:ACTION_ID_PREFIX],
        f"{tail_score:.4f}",
        CLUSTER_BUCKET_SECONDS,
        CLUSTER_BUCKETS,
        len(VELOCITY_WINDOWS),
        *velocity_args,
        max_shares(attempt.action_type, attempt.score_increment),
    ]
    chain = counters.counters() if counters is not None else None
    script = _RECORD_AND_LOAD
    if chain is not None:
        counter_keys, limits, expiry = chain
        script = _COUNTED_RECORD_AND_LOAD
        keys, args = [*counter_keys, *keys], [len(counter_keys), expiry, *limits, *args]
    guard = card.guard() if card is not None else None
    if guard is None:
        reply = source_run(client, script, keys, args)
    else:  # the card first: a miss raises CardMiss, nothing done
        carded = registered_script(client, _CARDED[script])
        reply = card.settle(script_run(client, carded, [*guard[0], *keys], [*guard[1], *args]))
    if chain is not None:
        counters.settle(reply[0])  # 429 when one is over (then the window script did not run)
        reply = reply[1]
    rejections, raw_recent, accounts, fresh, sums, raw_clusters, retry = reply
    if not fresh:
        return WindowView(recent=[], accounts_on_ip=1, source="redis", repeat=True)
    recent = [a for a in (decode(raw) for raw in raw_recent) if a is not None]
    counts = [int(v) for v in rejections]
    velocity: dict[tuple[int, str], tuple[int, int]] = {}
    for i, (length, _bucket) in enumerate(VELOCITY_WINDOWS):
        type_points, type_count, total_points, total_count = (int(v) for v in sums[4 * i : 4 * i + 4])
        velocity[(length, attempt.action_type)] = (type_points, type_count)
        velocity[(length, TOTAL)] = (total_points, total_count)
    clusters = [
        ClusterView(kind=kind, key=key, accounts=int(raw[0]), submissions=int(raw[1]), tail_sum=float(raw[2]))
        for (kind, key), raw in zip(
            (("address", ip or "-"), ("subnet", subnet), ("fingerprint", f"{user_agent[:60]!r} on {subnet}")),
            raw_clusters,
            strict=False,
        )
    ]
    return WindowView(
        recent=recent,
        accounts_on_ip=int(accounts),
        source="redis",
        rejected_tokens_player=sum(counts[: len(player_rejections)]),
        rejected_tokens_ip=sum(counts[len(player_rejections) :]),
        velocity=velocity,
        clusters=clusters,
        retry=bool(retry),
    )


def _velocity_from_database(*, user_id: str, attempt: Attempt) -> dict[tuple[int, str], tuple[int, int]]:
    """Points and submissions per budget window from ``score_history`` (applied actions), plus this attempt.

    One aggregate query over the player's last hour (the ``(user, created_at)`` index).
    """
    now = attempt.submitted_at
    longest = max(length for length, _ in VELOCITY_WINDOWS)
    aggregates: dict[str, Any] = {}
    for length, _bucket in VELOCITY_WINDOWS:
        recent = Q(created_at__gte=dt.datetime.fromtimestamp(now - length, tz=dt.UTC))
        aggregates[f"p{length}"] = Sum("score_increment", filter=recent)
        aggregates[f"n{length}"] = Count("id", filter=recent)
    rows = (
        ScoreHistory.objects.filter(
            user_id=user_id,
            kind=ScoreHistory.Kind.ACTION,
            created_at__gte=dt.datetime.fromtimestamp(now - longest, tz=dt.UTC),
        )
        .values("action_type")
        .annotate(**aggregates)
        .order_by()
    )
    velocity: dict[tuple[int, str], tuple[int, int]] = {}
    for length, _bucket in VELOCITY_WINDOWS:
        velocity[(length, attempt.action_type)] = (attempt.score_increment, 1)
        velocity[(length, TOTAL)] = (max_shares(attempt.action_type, attempt.score_increment), 1)
    for row in rows:
        values: dict[str, Any] = dict(row)
        for length, _bucket in VELOCITY_WINDOWS:
            points, count = int(values[f"p{length}"] or 0), int(values[f"n{length}"] or 0)
            if values["action_type"] == attempt.action_type:
                old_points, old_count = velocity[(length, attempt.action_type)]
                velocity[(length, attempt.action_type)] = (old_points + points, old_count + count)
            old_shares, old_count = velocity[(length, TOTAL)]
            shares = max_shares(values["action_type"], points)
            velocity[(length, TOTAL)] = (old_shares + shares, old_count + count)
    return velocity


def _from_database(*, user_id: str, ip: str | None, now: float, attempt: Attempt | None = None) -> WindowView:
    """The window from PostgreSQL/SQLite: applied actions (score_history) and blocked attempts
    (fraud_logs), so a blocked bot is still remembered without Redis."""
    since = dt.datetime.fromtimestamp(now - WINDOW_TTL_SECONDS, tz=dt.UTC)
    applied = (
        ScoreHistory.objects.filter(user_id=user_id, kind=ScoreHistory.Kind.ACTION, created_at__gte=since)
        .order_by("-created_at")
        .values_list("created_at", "action_timestamp", "action_type", "score_increment", "action_id")[:WINDOW_SIZE]
    )
    recent = [
        Attempt(
            submitted_at=created_at.timestamp(),
            action_timestamp=int(action_at.timestamp()) if action_at else int(created_at.timestamp()),
            action_type=action_type,
            score_increment=increment,
            action_id=(action_id or "")[:ACTION_ID_PREFIX],
        )
        for created_at, action_at, action_type, increment, action_id in applied
    ]
    blocked = (
        FraudLog.objects.filter(user_id=user_id, decision=FraudLog.Decision.BLOCKED, created_at__gte=since)
        .order_by("-created_at")
        .values_list("created_at", "metadata")[:WINDOW_SIZE]
    )
    for created_at, metadata in blocked:
        action = metadata.get("action", {}) if isinstance(metadata, dict) else {}
        try:
            recent.append(
                Attempt(
                    submitted_at=created_at.timestamp(),
                    action_timestamp=int(action["timestamp"]),
                    action_type=str(action["action_type"]),
                    score_increment=int(action["score_increment"]),
                    action_id=str(action.get("action_id", ""))[:ACTION_ID_PREFIX],
                )
            )
        except (KeyError, TypeError, ValueError):
            continue
    recent.sort(key=lambda a: a.submitted_at, reverse=True)
    del recent[WINDOW_SIZE:]
    accounts_on_ip = 1
    # score_history has no index on the address: the scan is fine on the embedded SQLite, not on a big
    # PostgreSQL table while Redis is down, so there the rule sits out until Redis is back.
    if ip and connection.vendor != "postgresql":
        accounts_on_ip += (
            ScoreHistory.objects.filter(ip_address=ip, created_at__gte=since)
            .exclude(user_id=user_id)
            .values("user_id")
            .distinct()
            .count()
        )
    rejected_player, rejected_ip = _cached_rejections(user_id=user_id, ip=ip, now=now)
    return WindowView(
        recent=recent,
        accounts_on_ip=accounts_on_ip,
        source="database",
        rejected_tokens_player=rejected_player,
        rejected_tokens_ip=rejected_ip,
        velocity=_velocity_from_database(user_id=user_id, attempt=attempt) if attempt is not None else {},
    )


# ---------------------------------------------------------------------------------------------
# Rejected action tokens
# ---------------------------------------------------------------------------------------------
def _rejection_keys(kind: str, who: str, now: float) -> list[str]:
    bucket = int(now // REJECTION_BUCKET_SECONDS)
    return [gate_key("fraud", "rej", kind, who, str(bucket - i)) for i in range(REJECTION_BUCKETS)]


REJECTION_TTL_SECONDS = REJECTION_BUCKET_SECONDS * (REJECTION_BUCKETS + 1)


def token_rejection_record(*, user_id: str | None, ip: str | None, now: float) -> None:
    """Count one rejected action token for the player and the address (best effort).

    In Redis when configured (read back in the window's round trip), else in the Django cache.
    """
    keys = []
    if user_id:
        keys.append(_rejection_keys("u", user_id, now)[0])
    if ip:
        keys.append(_rejection_keys("ip", ip, now)[0])
    if not keys:
        return
    client = get_redis()
    if client is not None:
        with contextlib.suppress(*REDIS_ERRORS):
            pipe = client.pipeline(transaction=False)
            for key in keys:
                pipe.incr(key)
                pipe.expire(key, REJECTION_TTL_SECONDS)
            pipe.execute()
        return
    for key in keys:
        with contextlib.suppress(ValueError):
            cache.add(key, 0, timeout=REJECTION_TTL_SECONDS)
            cache.incr(key)


def _cached_rejections(*, user_id: str, ip: str | None, now: float) -> tuple[int, int]:
    """Rejection counts without Redis: the embedded default's local-memory cache (0 when Redis is down)."""
    if get_redis() is not None:
        return 0, 0  # Redis is configured but not answering: the counters are out of reach
    player_keys = _rejection_keys("u", user_id, now)
    ip_keys = _rejection_keys("ip", ip, now) if ip else []
    values = cache.get_many([*player_keys, *ip_keys])
    return (
        sum(int(values.get(k, 0)) for k in player_keys),
        sum(int(values.get(k, 0)) for k in ip_keys),
    )
