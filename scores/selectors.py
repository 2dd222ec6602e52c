"""Score reads: the board and a player's rank, from the Redis index when it answers, else PostgreSQL."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator
from dataclasses import dataclass

from django.db.models import Max, Q, QuerySet

from accounts.models import User
from scoreboard.redis import REDIS_ERRORS
from scores.ranking import GLOBAL, Board, IndexEntry, redis_index

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BoardRow:
    rank: int
    user_id: str
    username: str
    score: int
    last_updated: str

    def as_dict(self) -> dict[str, object]:
        """The row as every read path shows it (REST, WebSocket, SSE)."""
        return {
            "rank": self.rank,
            "user_id": self.user_id,
            "username": self.username,
            "score": self.score,
            "last_updated": self.last_updated,
        }


@dataclass(frozen=True)
class BoardPage:
    rows: list[BoardRow]
    total_players: int
    last_updated: str | None
    source: str  # "redis" or "database"


def _iso(value: dt.datetime | None) -> str | None:
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z") if value else None


def ranked_players() -> QuerySet[User]:
    """Players on the global board: active and with at least one score change."""
    return User.objects.filter(is_active=True, score_reached_at__isnull=False)


ORDERING = ("-current_score", "score_reached_at", "id")


def _board_from_db(*, limit: int, offset: int = 0) -> BoardPage:
    players = ranked_players()
    rows = [
        BoardRow(
            rank=offset + i + 1,
            user_id=str(p.id),
            username=p.username,
            score=p.current_score,
            last_updated=_iso(p.score_reached_at) or "",
        )
        for i, p in enumerate(
            players.order_by(*ORDERING).only("id", "username", "current_score", "score_reached_at")[
                offset : offset + limit
            ]
        )
    ]
    summary = players.aggregate(last=Max("score_reached_at"))
    return BoardPage(rows=rows, total_players=players.count(), last_updated=_iso(summary["last"]), source="database")


def leaderboard_top(*, limit: int, board: Board = GLOBAL) -> BoardPage:
    """The top ``limit`` players of ``board`` in the one ordering rule."""
    index = redis_index(board)
    if index is not None:
        try:
            page = index.page(limit=limit)
        except REDIS_ERRORS:
            logger.warning("redis unavailable; serving the board from the database")
        else:
            return BoardPage(
                rows=[
                    BoardRow(
                        rank=i + 1, user_id=r.user_id, username=r.username, score=r.score, last_updated=r.last_updated
                    )
                    for i, r in enumerate(page.rows)
                ],
                total_players=page.total_players,
                last_updated=page.last_updated,
                source="redis",
            )
    return _board_from_db(limit=limit)


def rank_in_db(*, user_id: str, score: int, reached_at: dt.datetime | None) -> int | None:
    """1-based rank a player with this score and time has among ranked players (None if unranked)."""
    if reached_at is None:
        return None
    # The player's own row is excluded: after an update it holds the new score, which would
    # otherwise count as "ahead" of the old one and push old_rank down by one.
    ahead = (
        ranked_players()
        .exclude(pk=user_id)
        .filter(
            Q(current_score__gt=score)
            | Q(current_score=score, score_reached_at__lt=reached_at)
            | Q(current_score=score, score_reached_at=reached_at, id__lt=user_id)
        )
    )
    return ahead.count() + 1


def player_rank(*, user_id: str, board: Board = GLOBAL) -> int | None:
    index = redis_index(board)
    if index is not None:
        try:
            return index.rank_of(user_id)[0]
        except REDIS_ERRORS:
            logger.warning("redis unavailable; ranking from the database")
    player = ranked_players().filter(pk=user_id).only("current_score", "score_reached_at").first()
    if player is None:
        return None
    return rank_in_db(user_id=user_id, score=player.current_score, reached_at=player.score_reached_at)


def index_entry(player: User) -> IndexEntry:
    assert player.score_reached_at is not None
    return IndexEntry(
        user_id=str(player.id),
        username=player.username,
        score=player.current_score,
        version=player.score_version,
        reached_at=player.score_reached_at,
        last_updated=player.score_reached_at,
    )


def index_entries(*, board: Board = GLOBAL) -> Iterator[IndexEntry]:
    """Every ranked player as an index entry, streamed from the database (for rebuilds)."""
    players = (
        ranked_players().only("id", "username", "current_score", "score_version", "score_reached_at").order_by("id")
    )
    for player in players.iterator(chunk_size=2000):
        yield index_entry(player)
