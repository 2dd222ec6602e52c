"""The lean floor: the least a score update can cost in Django with the same round trips.

A plain Django view behind Django's WSGI handler with NO middleware and no DRF, doing what an
update must do and nothing else:

  two HS256 verifications (the player's JWT, the action token), one Redis script (per-IP,
  per-player and global counters, the replay pre-filter on nonce and action id, the player's fraud
  window), the one-statement PostgreSQL write of every board fed (``scores.services.SUBMIT_SQL``),
  one Redis script (every board's index entry, its new rank, one publish per board), an orjson
  response.

Both Redis calls go through ``scoreboard.redis.script_run``, as the full path makes them (one
write on one pooled connection, without redis-py's pipeline machinery).

It has no error contract, no fraud rules, no logging, no metrics and writes the index under keys
of its own (``sb:floor:...``), so it is a baseline, never a way to serve. ``bench.profile_update
--compare 1,3,floor`` measures it in the same process and rounds as the real path; it is not
mounted in the project's URLconf. ``make bench`` also serves it (``bench/lean_floor_wsgi.py``, the
same gunicorn behind the same nginx site, PostgreSQL and Redis) and runs the update ladder against
it, with ``GET /v1/leaderboard`` beside the updates as the real ladder has it: one Redis read of
the floor's global top 10.
"""

from __future__ import annotations

import time
from typing import Any

import jwt
import orjson
from django.conf import settings
from django.core.handlers.wsgi import WSGIHandler
from django.http import HttpRequest, HttpResponse
from django.http.response import HttpResponseBase
from django.test.utils import override_settings
from django.urls import path
from django.utils import timezone

from scoreboard import db
from scoreboard.redis import get_redis, script_run
from scores import action_tokens, services

KEY_PREFIX = "sb:floor:"

# Before the write: three fixed-window counters, SET NX on nonce and action id, the fraud window
# (add this attempt, trim to the window, read it back). KEYS: ip, player, global counters, nonce,
# action, window. ARGV: counter ttl, nonce ttl, now, window seconds, member.
BEFORE = """
local counts = {}
for i = 1, 3 do
  counts[i] = redis.call('INCR', KEYS[i])
  if counts[i] == 1 then redis.call('EXPIRE', KEYS[i], ARGV[1]) end
end
local fresh = redis.call('SET', KEYS[4], '1', 'NX', 'EX', ARGV[2])
redis.call('SET', KEYS[5], '1', 'NX', 'EX', ARGV[2])
redis.call('ZADD', KEYS[6], ARGV[3], ARGV[5])
redis.call('ZREMRANGEBYSCORE', KEYS[6], '-inf', ARGV[3] - ARGV[4])
redis.call('EXPIRE', KEYS[6], ARGV[4])
local window = redis.call('ZRANGE', KEYS[6], 0, -1)
return {counts[1], counts[2], counts[3], fresh and 1 or 0, #window}
"""

# After the write: per board, the player's entry (score in the zset, a hash for the version), the
# new rank, one publish. KEYS: zset, hash, channel per board. ARGV: member, then score per board.
AFTER = """
local out = {}
for i = 0, (#KEYS / 3) - 1 do
  local zset, hash, channel = KEYS[i * 3 + 1], KEYS[i * 3 + 2], KEYS[i * 3 + 3]
  redis.call('ZADD', zset, ARGV[i + 2], ARGV[1])
  redis.call('HINCRBY', hash, ARGV[1], 1)
  local rank = redis.call('ZREVRANK', zset, ARGV[1])
  redis.call('PUBLISH', channel, ARGV[1])
  out[#out + 1] = rank
end
return out
"""


class _Scripts:
    def __init__(self) -> None:
        self.before: Any = None
        self.after: Any = None

    def load(self) -> tuple[Any, Any]:
        if self.before is None:
            client = get_redis()
            assert client is not None
            self.before, self.after = client.register_script(BEFORE), client.register_script(AFTER)
        return self.before, self.after


_scripts = _Scripts()


def _board_key(board_id: str, period_key: str) -> str:
    """Where the floor keeps one board period's index (the AFTER script's keys add :z, :v, :live)."""
    return f"{KEY_PREFIX}{{b:{board_id}}}:{period_key}"


def update(request: HttpRequest) -> HttpResponse:
    before, after = _scripts.load()
    redis_client = get_redis()
    assert redis_client is not None
    jwt_settings = settings.SIMPLE_JWT
    access = jwt.decode(
        request.headers["Authorization"].removeprefix("Bearer "),
        jwt_settings["SIGNING_KEY"],
        algorithms=["HS256"],
        audience=jwt_settings["AUDIENCE"],
        issuer=jwt_settings["ISSUER"],
    )
    user_id = access["sub"]
    body = orjson.loads(request.body)
    claims = action_tokens.verify(body["action_token"])
    if claims.user_id != user_id:
        return HttpResponse(status=403)
    now_s = time.time()
    minute = int(now_s // 60)
    ip = request.META["REMOTE_ADDR"]
    counts = script_run(
        redis_client,
        before,
        [
            f"{KEY_PREFIX}ip:{ip}:{minute}",
            f"{KEY_PREFIX}p:{user_id}:{minute}",
            f"{KEY_PREFIX}g:{minute}",
            f"{KEY_PREFIX}nonce:{claims.nonce}",
            f"{KEY_PREFIX}action:{claims.action_id}",
            f"{KEY_PREFIX}w:{user_id}",
        ],
        [60, services._prefilter_ttl(), now_s, 3600, claims.action_id],
    )
    if not counts[3]:
        return HttpResponse(status=409)
    now = timezone.now()
    writes = services.board_writes(action_type=claims.action_type, at=now)
    params = {
        "user_id": user_id,
        "epoch": int(access.get("epoch", 0)),  # the write checks the session on the row, as ours does
        "external": False,
        "iat": None,
        "nonce": claims.nonce,
        "action_id": claims.action_id,
        "now": now,
        "value": claims.score_increment,
        "global_inc": claims.score_increment,
        **services.board_arrays(writes),
        "kind": "action",
        "action_type": claims.action_type,
        "token_hash": action_tokens.token_hash(body["action_token"]),
        "action_ts": claims.occurred_at,
        "ip": ip,
        "user_agent": "",
        "metadata": "{}",
    }
    rows = db.fetchall(services.SUBMIT_SQL, params)
    if not rows:
        return HttpResponse(status=403)
    keys: list[str] = []
    scores: list[int] = []
    for row in rows:
        board = _board_key(row[4], row[5])
        keys += [f"{board}:z", f"{board}:v", f"{board}:live"]
        scores.append(row[8])
    ranks = script_run(redis_client, after, keys, [user_id, *scores])
    payload = {
        "user_id": user_id,
        "old_score": rows[0][0],
        "new_score": rows[0][1],
        "increment": claims.score_increment,
        "boards": [
            {"board": row[4], "period": row[5], "new_score": row[8], "new_rank": rank + 1}
            for row, rank in zip(rows, ranks, strict=True)
        ],
    }
    return HttpResponse(orjson.dumps(payload), content_type="application/json")


GLOBAL_ZSET = _board_key("global", "all") + ":z"  # the AFTER script's zset of the global board
TOP = 10


def leaderboard(request: HttpRequest) -> HttpResponse:
    """``GET /v1/leaderboard``'s floor: the global top 10 from Redis in one round trip, orjson."""
    redis_client = get_redis()
    assert redis_client is not None
    rows: list[tuple[bytes, float]] = redis_client.zrevrange(GLOBAL_ZSET, 0, TOP - 1, withscores=True)  # type: ignore[assignment]
    payload = [
        {"rank": i + 1, "user_id": member.decode(), "score": int(score)} for i, (member, score) in enumerate(rows)
    ]
    return HttpResponse(orjson.dumps({"leaderboard": payload}), content_type="application/json")


urlpatterns = [path("v1/scores/update", update), path("v1/leaderboard", leaderboard)]


class FloorHandler(WSGIHandler):
    """Django's WSGI handler with no middleware, routing to this module's one view."""

    def load_middleware(self, is_async: bool = False) -> None:
        with override_settings(MIDDLEWARE=[]):
            super().load_middleware(is_async=is_async)

    def get_response(self, request: HttpRequest) -> HttpResponseBase:
        request.urlconf = __name__
        return super().get_response(request)


def floor_keys_delete() -> None:
    """Forget the floor's own Redis keys (after a measurement)."""
    client = get_redis()
    if client is None:
        return
    batch: list[Any] = []
    for key in client.scan_iter(match=f"{KEY_PREFIX}*", count=1000):
        batch.append(key)
        if len(batch) >= 1000:
            client.delete(*batch)
            batch.clear()
    if batch:
        client.delete(*batch)
