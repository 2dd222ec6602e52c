"""Repair the ranking index as soon as Redis answers again, not at the next scheduled drift check.

``scoreboard.redis`` calls :func:`index_repair_on_reconnect` (registered in ``ScoresConfig.ready``)
from a background thread when its circuit closes after an outage (updates meanwhile committed on
PostgreSQL only) or when a connection finds Redis empty (restarted without persistence). It only
enqueues the drift check, once across all processes (a key in Redis, for at most
``DEDUPE_SECONDS``), so that every process noticing the same outage starts one repair, not one
each. The key (``scores.tasks.REPAIR_QUEUED_KEY``) means "a repair is queued and has not
started": the task removes it when it starts,
so an outage that begins during a repair (which then fails or misses what came after) queues the
next one instead of being swallowed by the dedupe.
"""

from __future__ import annotations

import logging

from scoreboard.redis import REDIS_ERRORS, Reconnected, get_redis, servers_of
from scores.tasks import REPAIR_QUEUED_KEY, leaderboard_drift_check_task

logger = logging.getLogger(__name__)

DEDUPE_SECONDS = 10


def index_repair_on_reconnect(event: Reconnected) -> None:
    client = get_redis()
    if client is None:
        return
    if (event.server, event.db) not in servers_of(client):
        return  # another Redis (a cache elsewhere): the index is not there
    try:
        first = bool(client.set(REPAIR_QUEUED_KEY, "1", nx=True, ex=DEDUPE_SECONDS))
    except REDIS_ERRORS:
        return  # down again: the next reconnect tries again
    if not first:
        return

    logger.warning("redis is back%s: repairing the ranking index now", " EMPTY" if event.empty else " after an outage")
    leaderboard_drift_check_task.delay()
