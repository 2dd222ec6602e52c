"""The recent history the fraud rules read: per-player attempts, accounts per IP, rejected tokens.

With Redis (production) each window is a small capped structure with a TTL, so memory stays bounded
by the players active in the last hour:

- ``sb:fraud:p:<user>``: a list of the player's last ``WINDOW_SIZE`` attempts (applied or blocked),
  newest first, ~60 bytes each; expires ``WINDOW_TTL_SECONDS`` after the last attempt.
- ``sb:fraud:ip:<ip>``: a sorted set of the players who scored from the address in the last hour
  (score = last time), capped at ``IP_ACCOUNTS_KEPT`` members.

Reading and appending happen in one script call (atomic, one round trip), so two concurrent attempts
of one player each see the other. Without Redis (the embedded default, or Redis down) the window is read from
``score_history`` (applied actions) and ``fraud_logs`` (blocked attempts).

Rejected action tokens are counted per player and per address in fixed five-minute buckets
(``sb:fraud:rej:...``, read in the same round trip as the window), or in the local-memory cache in
the embedded default. One attempt therefore costs the fraud engine a single Redis round trip.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import redis
from django.core.cache import cache
from django.db import connection

from fraud.models import FraudLog
from fraud.rules import Attempt
from scoreboard.redis import REDIS_ERRORS, get_redis, registered_script
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


def _player_key(user_id: str) -> str:
    return f"sb:fraud:p:{user_id}"


def _ip_key(ip: str) -> str:
    return f"sb:fraud:ip:{ip}"


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
    *, user_id: str, ip: str | None, attempt: Attempt, once_keys: Sequence[str] = (), once_ttl: int = 0
) -> WindowView:
    """Append ``attempt`` to the player's window and return what was there before, plus the IP's count.

    ``once_keys`` (Redis keys, kept ``once_ttl`` seconds) make the attempt count once: if any of them
    is already set the attempt is a repeat — nothing is recorded and ``repeat`` is True. The score
    service passes its replay pre-filter keys (nonce, action id) so that the pre-filter and the
    window share one round trip. Without Redis there is no pre-filter: never a repeat.
    """
    client = get_redis()
    if client is not None:
        try:
            return _from_redis(client, user_id=user_id, ip=ip, attempt=attempt, once_keys=once_keys, once_ttl=once_ttl)
        except REDIS_ERRORS:
            logger.warning("redis unavailable; fraud windows read from the database")
    return _from_database(user_id=user_id, ip=ip, now=attempt.submitted_at)


# KEYS: the player's list, the address' set (a placeholder without an address), the "once" keys,
# then the rejection buckets. ARGV: encoded attempt, window size, window TTL, user id, submitted at,
# address cutoff, accounts kept, address TTL, "1" when there is an address, number of once keys,
# their TTL. With once keys, each is SET NX first; if any already existed the attempt is a repeat
# and nothing is recorded or read. One script call (atomic, one round trip) instead of a MULTI.
_RECORD_AND_LOAD = """
local once = tonumber(ARGV[10])
local fresh = 1
for i = 3, 2 + once do
  if not redis.call('SET', KEYS[i], '1', 'NX', 'EX', ARGV[11]) then fresh = 0 end
end
if fresh == 0 then return {{}, {}, 0, 0} end
local rejections = {}
for i = 3 + once, #KEYS do rejections[#rejections + 1] = tonumber(redis.call('GET', KEYS[i]) or '0') or 0 end
local size = tonumber(ARGV[2])
local recent = redis.call('LRANGE', KEYS[1], 0, size - 1)
redis.call('LPUSH', KEYS[1], ARGV[1])
redis.call('LTRIM', KEYS[1], 0, size - 1)
redis.call('EXPIRE', KEYS[1], ARGV[3])
local accounts = 1
if ARGV[9] == '1' then
  redis.call('ZADD', KEYS[2], ARGV[5], ARGV[4])
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[6])
  redis.call('ZREMRANGEBYRANK', KEYS[2], 0, -(tonumber(ARGV[7]) + 1))
  accounts = redis.call('ZCARD', KEYS[2])
  redis.call('EXPIRE', KEYS[2], ARGV[8])
end
return {rejections, recent, accounts, 1}
"""


def _from_redis(
    client: redis.Redis,
    *,
    user_id: str,
    ip: str | None,
    attempt: Attempt,
    once_keys: Sequence[str] = (),
    once_ttl: int = 0,
) -> WindowView:
    player_rejections = _rejection_keys("u", user_id, attempt.submitted_at)
    ip_rejections = _rejection_keys("ip", ip, attempt.submitted_at) if ip else []
    rejections, raw_recent, accounts, fresh = registered_script(client, _RECORD_AND_LOAD)(
        keys=[_player_key(user_id), _ip_key(ip or "-"), *once_keys, *player_rejections, *ip_rejections],
        args=[
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
        ],
    )
    if not fresh:
        return WindowView(recent=[], accounts_on_ip=1, source="redis", repeat=True)
    recent = [a for a in (decode(raw) for raw in raw_recent) if a is not None]
    counts = [int(v) for v in rejections]
    return WindowView(
        recent=recent,
        accounts_on_ip=int(accounts),
        source="redis",
        rejected_tokens_player=sum(counts[: len(player_rejections)]),
        rejected_tokens_ip=sum(counts[len(player_rejections) :]),
    )


def _from_database(*, user_id: str, ip: str | None, now: float) -> WindowView:
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
    )


# ---------------------------------------------------------------------------------------------
# Rejected action tokens
# ---------------------------------------------------------------------------------------------
def _rejection_keys(kind: str, who: str, now: float) -> list[str]:
    bucket = int(now // REJECTION_BUCKET_SECONDS)
    return [f"sb:fraud:rej:{kind}:{who}:{bucket - i}" for i in range(REJECTION_BUCKETS)]


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
