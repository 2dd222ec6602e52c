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
from scoreboard_client.types import ActionToken, Leaderboard, LeaderboardEntry, Me, ScoreUpdate, TokenPair

__all__ = [
    "ActionToken",
    "ActionTokenReplayed",
    "BadRequest",
    "Conflict",
    "Forbidden",
    "Leaderboard",
    "LeaderboardEntry",
    "Me",
    "NotFound",
    "RateLimited",
    "ScoreUpdate",
    "Scoreboard",
    "ScoreboardError",
    "ServiceUnavailable",
    "TokenPair",
    "TransportError",
    "Unauthorized",
    "mint_action_token",
]
