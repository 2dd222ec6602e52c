"""Typed results. Each keeps the answer's ``data`` as ``raw``, so fields added later stay readable."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ActionToken:
    action_token: str
    action_id: str
    expires_at: str
    raw: dict[str, Any] = field(repr=False, compare=False, default_factory=dict)

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> ActionToken:
        return cls(str(data["action_token"]), str(data["action_id"]), str(data["expires_at"]), raw=data)


@dataclass(frozen=True)
class ScoreUpdate:
    user_id: str
    old_score: int
    new_score: int
    increment: int
    new_rank: int | None
    old_rank: int | None
    boards: list[dict[str, Any]] = field(default_factory=list)  # one per board written, when the service has boards
    raw: dict[str, Any] = field(repr=False, compare=False, default_factory=dict)

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> ScoreUpdate:
        return cls(
            user_id=str(data["user_id"]),
            old_score=int(data["old_score"]),
            new_score=int(data["new_score"]),
            increment=int(data["increment"]),
            new_rank=data.get("new_rank"),
            old_rank=data.get("old_rank"),
            boards=list(data.get("boards") or []),
            raw=data,
        )


@dataclass(frozen=True)
class LeaderboardEntry:
    rank: int
    user_id: str
    username: str
    score: int
    last_updated: str | None

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> LeaderboardEntry:
        return cls(
            int(data["rank"]), str(data["user_id"]), str(data["username"]), int(data["score"]), data.get("last_updated")
        )


@dataclass(frozen=True)
class Leaderboard:
    entries: list[LeaderboardEntry]
    total_players: int
    last_updated: str | None
    raw: dict[str, Any] = field(repr=False, compare=False, default_factory=dict)

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> Leaderboard:
        rows = data.get("leaderboard", data.get("entries", []))
        return cls(
            entries=[LeaderboardEntry.from_data(row) for row in rows],
            total_players=int(data.get("total_players", data.get("entry_count", len(rows)))),
            last_updated=data.get("last_updated"),
            raw=data,
        )


@dataclass(frozen=True)
class TokenPair:
    access: str
    refresh: str
    expires_in: int
    user_id: str

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> TokenPair:
        return cls(str(data["access"]), str(data["refresh"]), int(data["expires_in"]), str(data["user_id"]))


@dataclass(frozen=True)
class Me:
    user_id: str
    username: str
    scopes: list[str]
    issuer: str | None  # the external identity provider, or None for the service's own accounts

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> Me:
        return cls(str(data["user_id"]), str(data["username"]), list(data.get("scopes", [])), data.get("issuer"))
