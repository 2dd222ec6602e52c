"""Scoreboard kit for game servers: offline action tokens, score submission, board reads."""

from scoreboard_client.client import Scoreboard
from scoreboard_client.errors import (
    ActionTokenReplayed,
    BadRequest,
    Conflict,
    Forbidden,
    NotFound,
    RateLimited,
    ScoreboardError,
    ServiceUnavailable,
    TransportError,
    Unauthorized,
)
from scoreboard_client.tokens import mint_action_token
from scoreboard_client.types import (
    ActionToken,
    Around,
    Board,
    BoardPage,
    Leaderboard,
    LeaderboardEntry,
    Me,
    Period,
    ScoreUpdate,
    Standing,
    TokenPair,
)

__all__ = [
    "ActionToken",
    "ActionTokenReplayed",
    "Around",
    "BadRequest",
    "Board",
    "BoardPage",
    "Conflict",
    "Forbidden",
    "Leaderboard",
    "LeaderboardEntry",
    "Me",
    "NotFound",
    "Period",
    "RateLimited",
    "ScoreUpdate",
    "Scoreboard",
    "ScoreboardError",
    "ServiceUnavailable",
    "Standing",
    "TokenPair",
    "TransportError",
    "Unauthorized",
    "mint_action_token",
]
