"""The player card: what a score update needs of the player's row, kept in Redis, so that a warm
update makes one PostgreSQL round trip (the write) instead of two (the player lookup, then the write).

``sb:{gate}:card:<user id>``, a hash: ``a`` active ("1"), ``e`` token epoch, ``j`` date joined (Unix
seconds), ``s`` current score, ``v`` score version, ``q`` quarantined ("1"/"0"); ~100 bytes, expires
``CARD_TTL_SECONDS`` after it was last written. It carries the gate hash tag, so the pre-write script
(``fraud.windows``: limits, replay pre-filter, fraud windows) reads it in the same call and the same
slot of a Redis Cluster.

How it is used (``scores.apis.ScoreSubmitApi`` with ``ScopedJWTAuthentication(cards=True)``):

1. Authentication verifies the JWT and returns ``accounts.authentication.pending_player``, a
   ``User`` with only its id loaded (every other field deferred: reading one would load it from
   PostgreSQL, never answer a default).
2. The pre-write script (:func:`with_card`) first reads the card. When it is missing, not active, or
   of another epoch than the token's, the script returns at once with no side effect (nothing
   counted, nothing recorded) and :class:`CardMiss` is raised; the score service then runs the
   lookup as authentication always did (:func:`CardCheck.confirm`: 401 / 403 as before) and calls
   the script again, which fills the card from that lookup before doing its work.
3. The write (``scores.services.SUBMIT_SQL``) itself checks ``is_active`` and the token's epoch (or,
   for an external issuer's token, ``sessions_revoked_at`` against its ``iat``) on the row it
   locks: a stale card can never let a disabled player or a revoked session write. A refused write
   drops the card and answers what the lookup says (403 disabled, 401 session revoked / no player).
4. After the write the card takes the new score and version (``refresh_call``, in the index's
   pipeline, only if the card is still there: a card dropped meanwhile stays dropped).

A session that begins (``accounts.services.player_tokens_issue``: a login)
offers the card from the row it just read (:func:`card_offer`, only where none is), so a session's
first update is warm too; the lookup above is then for a player idle longer than the card's TTL.

Every change of the ``users`` row drops the card: ``post_save`` / ``post_delete`` (the admin, a
password change, an erasure, a reversal) and ``UserQuerySet.update`` (a ban, a quarantine, "sign out
everywhere"), at once and again after the commit. The embedded default (no Redis) and Redis down:
no card, the lookup as before.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from collections.abc import Callable, Iterable
from typing import Any

from django.conf import settings
from django.db import connection, transaction

from scoreboard.redis import (
    REDIS_ERRORS,
    ScriptCall,
    breaker_for,
    gate_key,
    get_redis,
    registered_script,
    servers_of,
    source_run,
)

logger = logging.getLogger(__name__)

CARD_TTL_SECONDS = 3600
PENDING_ATTRIBUTE = "sb_card_pending"
CARD_ARGS = 7  # ARGV the card prefix takes before the guarded script's own


def card_key(user_id: str) -> str:
    return gate_key("card", str(user_id))


def cards_usable() -> bool:
    """Cards are used with PostgreSQL and Redis (not the embedded SQLite default), unless Redis is
    known to be down (a circuit open): then the lookup runs at once, as before cards."""
    if not settings.REDIS_URL or connection.vendor != "postgresql":
        return False
    client = get_redis()
    return client is not None and not any(breaker_for(server).is_open for server, _db in servers_of(client))


class CardMiss(Exception):
    """The pre-write script found no usable card and did nothing: look the player up, then call again."""


# The card, as a prefix of another script (the pre-write one). KEYS: 1 the card, then the other
# script's keys. ARGV: 1 mode ("c" check, "f" fill, "-" neither), 2 the token's epoch, 3-6 (fill) date
# joined, score, score version, quarantined, 7 the card's TTL, then the other script's arguments.
# "c": a missing card, an inactive one or one of another epoch returns {0} before anything else runs.
# Reply: {1, {joined, score, quarantined} or {}, the other script's reply}.
_CARD_PREFIX = """
local mode = ARGV[1]
local card = {}
if mode == 'c' then
  local v = redis.call('HMGET', KEYS[1], 'a', 'e', 'j', 's', 'q')
  if v[1] ~= '1' or v[2] ~= ARGV[2] then return {0} end
  card = {v[3], v[4], v[5]}
elseif mode == 'f' then
  redis.call('HSET', KEYS[1], 'a', '1', 'e', ARGV[2], 'j', ARGV[3], 's', ARGV[4], 'v', ARGV[5], 'q', ARGV[6])
  redis.call('EXPIRE', KEYS[1], ARGV[7])
end
local inner_keys, inner_args = {}, {}
for i = 2, #KEYS do inner_keys[#inner_keys + 1] = KEYS[i] end
for i = 8, #ARGV do inner_args[#inner_args + 1] = ARGV[i] end
return {1, card, carded(inner_keys, inner_args)}
"""


def with_card(body: str) -> str:
    """``body`` (a script of its own, reading KEYS and ARGV: the pre-write script, with or without
    its counters) preceded by the card's check or fill in the same call; ``body``'s keys, arguments and
    reply pass through unchanged. See ``_CARD_PREFIX`` for the layout."""
    return "local function carded(KEYS, ARGV)\n" + body + "\nend\n" + _CARD_PREFIX


# KEYS: the card. ARGV: score, score version, quarantined, TTL. Only a card that is there and older.
_REFRESH = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if tonumber(redis.call('HGET', KEYS[1], 'v') or '-1') >= tonumber(ARGV[2]) then return 0 end
redis.call('HSET', KEYS[1], 's', ARGV[1], 'v', ARGV[2], 'q', ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[4])
return 1
"""


def refresh_call(client: Any, *, user_id: str, score: int, version: int, quarantined: bool) -> ScriptCall:
    """(script, keys, args) that gives an existing card the score just written (``scripts_run``)."""
    return (
        registered_script(client, _REFRESH),
        [card_key(user_id)],
        [score, version, "1" if quarantined else "0", CARD_TTL_SECONDS],
    )


# What an offered card is made of: a row loaded without one of them gets no card (see card_offer).
CARD_FIELDS = frozenset({"is_active", "token_epoch", "date_joined", "current_score", "score_version", "is_quarantined"})
# KEYS: the card. ARGV: epoch, date joined, score, score version, quarantined, TTL. Only where there is
# no card: a card already there is as new as the row or newer (refreshed by the last write).
_OFFER = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'a', '1', 'e', ARGV[1], 'j', ARGV[2], 's', ARGV[3], 'v', ARGV[4], 'q', ARGV[5])
redis.call('EXPIRE', KEYS[1], ARGV[6])
return 1
"""


def card_offer(user: Any) -> None:
    """A session begins (a login): the player's row was just read, so give them
    a card now, and their first score update is warm (one PostgreSQL round trip, not two) instead
    of looking the player up again. Only where no card is; after the current transaction commits;
    best effort (Redis down or slow: no card, the update looks the player up as before). A row
    loaded with some of the card's fields deferred gets none (reading them would query for each).

    Safe for the same reason as the lookup's fill: the write checks ``is_active`` and the epoch on
    the row it locks, so a card that a ban or a sign-out overtook between this read and this write
    refuses nothing it must not let through, and a refused write drops it.
    """
    if CARD_FIELDS & user.get_deferred_fields():
        return  # a partial row (only()): the card is not worth a query per field
    if not user.is_active or not cards_usable():
        return
    args = [user.token_epoch, *_card_values(user), CARD_TTL_SECONDS]
    key = [card_key(str(user.pk))]
    transaction.on_commit(lambda: _offer(key, args))


def _offer(keys: list[str], args: list[Any]) -> None:
    client = get_redis()
    if client is None:
        return
    try:
        with contextlib.suppress(*REDIS_ERRORS):
            source_run(client, _OFFER, keys, args)
    except Exception:  # a card not given must never fail the sign-in
        logger.exception("could not offer a player card")


def _ts(value: dt.datetime) -> str:
    return repr(value.timestamp())


def _card_values(user: Any) -> list[Any]:
    """A row's date joined, score, score version and quarantine flag, as a card holds them."""
    return [_ts(user.date_joined), user.current_score, user.score_version, "1" if user.is_quarantined else "0"]


class CardCheck:
    """One score update's use of the player's card (see the module docstring).

    ``guard()`` gives the pre-write script its card keys and arguments; ``settle(reply)`` reads its
    reply (raising :class:`CardMiss`); ``confirm()`` is the lookup when there is no usable card.
    ``pending`` stays True until the card or the lookup vouched for the player.
    """

    def __init__(self, user: Any, *, epoch: int, lookup: Callable[..., Any]) -> None:
        self.user = user  # accounts.models.User (not imported: the models import nothing of this)
        self.epoch = epoch
        self._lookup = lookup  # accounts.authentication.player_checked
        self.pending = True
        self._fill: list[Any] | None = None

    def guard(self) -> tuple[list[str], list[Any]] | None:
        key = [card_key(str(self.user.pk))]
        if self.pending:
            return key, ["c", self.epoch, "", "", "", "", CARD_TTL_SECONDS]
        if self._fill is not None:
            return key, ["f", self.epoch, *self._fill, CARD_TTL_SECONDS]
        return None

    def settle(self, reply: list[Any]) -> Any:
        """The inner script's reply; on a hit the player's fields come from the card."""
        if int(reply[0]) == 0:
            raise CardMiss
        if self.pending:
            joined, score, quarantined = reply[1]
            user = self.user
            user.is_active = True
            user.token_epoch = self.epoch
            user.date_joined = dt.datetime.fromtimestamp(float(joined), tz=dt.UTC)
            user.current_score = int(score)
            user.is_quarantined = quarantined == b"1"
            self.pending = False
            _unmark(user)
        self._fill = None
        return reply[2]

    def confirm(self) -> None:
        """The player's row from PostgreSQL, checked as authentication checks it (401 / 403); its
        values go into the card on the next pre-write call."""
        if not self.pending:
            return
        found = self._lookup(user_id=str(self.user.pk), epoch=self.epoch)
        user = self.user
        for field in type(user)._meta.concrete_fields:
            setattr(user, field.attname, getattr(found, field.attname))
        _unmark(user)
        self.pending = False
        self._fill = _card_values(found)


def is_pending(user: object) -> bool:
    return bool(getattr(user, PENDING_ATTRIBUTE, False))


def _unmark(user: Any) -> None:
    user.__dict__.pop(PENDING_ATTRIBUTE, None)


def cards_drop(user_ids: Iterable[object]) -> None:
    """Forget these players' cards now and again after the current transaction commits (a lookup
    that read the row before the commit may have filled one in between). Best effort: with Redis
    down a card lives on to its TTL, and the write's own checks still refuse what it must."""
    keys = [card_key(str(u)) for u in user_ids]
    if not keys or not settings.REDIS_URL:
        return
    _delete(keys)
    transaction.on_commit(lambda: _delete(keys))


def _delete(keys: list[str]) -> None:
    client = get_redis()
    if client is None:
        return
    try:
        with contextlib.suppress(*REDIS_ERRORS):
            client.delete(*keys)  # one slot: every card carries the gate tag
    except Exception:  # a card left behind must never fail the change that dropped it
        logger.exception("could not drop player cards")
