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


@dataclass(frozen=True)
class Period:
    key: str  # "all", "2026-12-01", "2026-W49", "2026-12" or a cron start
    starts_at: str | None
    ends_at: str | None
    closed: bool = False

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> Period:
        return cls(str(data["key"]), data.get("starts_at"), data.get("ends_at"), bool(data.get("closed", False)))


@dataclass(frozen=True)
class Board:
    id: str
    title: str
    sort: str
    operator: str
    period: str
    tie_policy: str
    current_period: Period
    next_reset: str | None
    entry_count: int | None
    raw: dict[str, Any] = field(repr=False, compare=False, default_factory=dict)

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> Board:
        return cls(
            id=str(data["id"]),
            title=str(data.get("title") or data["id"]),
            sort=str(data.get("sort", "desc")),
            operator=str(data.get("operator", "incr")),
            period=str(data.get("period", "all_time")),
            tie_policy=str(data.get("tie_policy", "first_reached")),
            current_period=Period.from_data(data["current_period"]),
            next_reset=data.get("next_reset"),
            entry_count=data.get("entry_count"),
            raw=data,
        )


@dataclass(frozen=True)
class BoardPage:
    entries: list[LeaderboardEntry]
    entry_count: int
    next_cursor: str | None  # pass to board_entries(cursor=...) for the next page; None at the end
    period: Period

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> BoardPage:
        return cls(
            entries=[LeaderboardEntry.from_data(row) for row in data.get("entries", [])],
            entry_count=int(data.get("entry_count", 0)),
            next_cursor=data.get("next_cursor"),
            period=Period.from_data(data["period"]),
        )


@dataclass(frozen=True)
class Standing:
    rank: int
    user_id: str
    username: str
    score: int
    entry_count: int
    percentile: float
    last_updated: str | None
    board: str | None = None  # set in standings(): which board this is

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> Standing:
        return cls(
            rank=int(data["rank"]),
            user_id=str(data.get("user_id", "")),
            username=str(data.get("username", "")),
            score=int(data["score"]),
            entry_count=int(data["entry_count"]),
            percentile=float(data["percentile"]),
            last_updated=data.get("last_updated"),
            board=data.get("board"),
        )


@dataclass(frozen=True)
class Around:
    player: Standing
    entries: list[LeaderboardEntry]
    period: Period

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> Around:
        return cls(
            player=Standing.from_data(data["player"]),
            entries=[LeaderboardEntry.from_data(row) for row in data.get("entries", [])],
            period=Period.from_data(data["period"]),
        )
