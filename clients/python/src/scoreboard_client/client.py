"""``Scoreboard``: the REST calls a game server makes, over the standard library's HTTP client."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from scoreboard_client.errors import ScoreboardError, TransportError, error_from_answer
from scoreboard_client.types import (
    ActionToken,
    Around,
    Board,
    BoardPage,
    Leaderboard,
    Me,
    ScoreUpdate,
    Standing,
    TokenPair,
)

DEFAULT_TIMEOUT_SECONDS = 10.0
USER_AGENT = "scoreboard-client-python"


class Scoreboard:
    """A Scoreboard service at ``base_url``.

    ``api_key`` is the game server's key (``POST /v1/actions``); ``access_token`` is a default
    player token for the calls that need one (each call can pass its own instead).
    """

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        access_token: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError("base_url must be an http(s) URL")
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.access_token = access_token
        self.timeout = timeout

    # -- transport --------------------------------------------------------------------------
    def _request(
        self,
        method: str,
        path: str,
        *,
        body: dict[str, Any] | None = None,
        query: dict[str, Any] | None = None,
        access_token: str | None = None,
        api_key: bool = False,
    ) -> Any:
        url = self.base_url + path
        if query:
            url += "?" + urllib.parse.urlencode({k: v for k, v in query.items() if v is not None})
        headers = {"Accept": "application/json", "User-Agent": USER_AGENT}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if api_key:
            if not self.api_key:
                raise ValueError("this call needs the game server's api_key")
            headers["X-API-Key"] = self.api_key
        token = access_token or self.access_token
        if token:
            headers["Authorization"] = f"Bearer {token}"
        request = urllib.request.Request(url, data=data, headers=headers, method=method)  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                status, raw, retry_after = response.status, response.read(), None
        except urllib.error.HTTPError as exc:
            status, raw, retry_after = exc.code, exc.read(), exc.headers.get("Retry-After")
        except (urllib.error.URLError, OSError) as exc:
            raise TransportError(0, "unreachable", f"{method} {url}: {exc}") from exc
        try:
            answer = json.loads(raw) if raw else None
        except ValueError:
            answer = None
        if 200 <= status < 300 and isinstance(answer, dict) and answer.get("success") is True:
            return answer.get("data")
        raise error_from_answer(status, answer, retry_after)

    # -- game server ------------------------------------------------------------------------
    def create_action(self, *, user_id: str, action_type: str, score_increment: int) -> ActionToken:
        """``POST /v1/actions`` (game-server key): the service mints the action token."""
        data = self._request(
            "POST",
            "/v1/actions",
            body={"user_id": str(user_id), "action_type": action_type, "score_increment": score_increment},
            api_key=True,
        )
        return ActionToken.from_data(data)

    # -- players ----------------------------------------------------------------------------
    def submit_score(
        self,
        action_token: str,
        *,
        access_token: str | None = None,
        action_type: str | None = None,
        level_id: str | None = None,
    ) -> ScoreUpdate:
        """``POST /v1/scores/update`` with the player's access token. Safe to retry (a replay raises)."""
        body: dict[str, Any] = {"action_token": action_token}
        metadata = {k: v for k, v in {"action_type": action_type, "level_id": level_id}.items() if v is not None}
        if metadata:
            body["metadata"] = metadata
        return ScoreUpdate.from_data(self._request("POST", "/v1/scores/update", body=body, access_token=access_token))

    def leaderboard(self, *, limit: int = 10, access_token: str | None = None) -> Leaderboard:
        """``GET /v1/leaderboard``: the global board's top ``limit`` (at most 100)."""
        return Leaderboard.from_data(
            self._request("GET", "/v1/leaderboard", query={"limit": limit}, access_token=access_token)
        )

    # -- boards -----------------------------------------------------------------------------
    # ``period``: "current" (default), "previous" or a period key; ``user_id`` may be "me" (the token's player).
    @staticmethod
    def _path(*parts: str) -> str:
        return "/v1/" + "/".join(urllib.parse.quote(part, safe="") for part in parts)

    def boards(self) -> list[Board]:
        """``GET /v1/boards``: the active boards with their current period."""
        return [Board.from_data(b) for b in self._request("GET", "/v1/boards")["boards"]]

    def create_board(self, board: str, **fields: Any) -> Board:
        """``POST /v1/boards`` (game-server key): ``title``, ``sort``, ``operator``, ``period``, ``action_types``..."""
        return Board.from_data(self._request("POST", "/v1/boards", body={"id": board, **fields}, api_key=True))

    def board(self, board: str) -> Board:
        return Board.from_data(self._request("GET", self._path("boards", board)))

    def board_entries(
        self, board: str, *, limit: int = 10, cursor: str | None = None, period: str | None = None
    ) -> BoardPage:
        """One page of a board; follow ``next_cursor`` for the next (stable while the board changes)."""
        query = {"limit": limit, "cursor": cursor, "period": period}
        return BoardPage.from_data(self._request("GET", self._path("boards", board, "entries"), query=query))

    def player_standing(
        self, board: str, user_id: str = "me", *, period: str | None = None, access_token: str | None = None
    ) -> Standing:
        """Rank, score and percentile of a player on a board (404 ``not_ranked`` when absent)."""
        data = self._request(
            "GET", self._path("boards", board, "players", user_id), query={"period": period}, access_token=access_token
        )
        return Standing.from_data(data)

    def around(
        self,
        board: str,
        user_id: str = "me",
        *,
        above: int = 5,
        below: int = 5,
        period: str | None = None,
        access_token: str | None = None,
    ) -> Around:
        """The player and their neighbours on a board."""
        query = {"above": above, "below": below, "period": period}
        data = self._request(
            "GET", self._path("boards", board, "around", user_id), query=query, access_token=access_token
        )
        return Around.from_data(data)

    def standings(self, user_id: str = "me", *, access_token: str | None = None) -> list[Standing]:
        """The player on every board (current periods)."""
        data = self._request("GET", self._path("players", user_id, "standings"), access_token=access_token)
        return [Standing.from_data(s) for s in data["standings"]]

    def me(self, *, access_token: str | None = None) -> Me:
        """``GET /v1/auth/me``: the ``user_id`` a token names (ours or an external issuer's)."""
        return Me.from_data(self._request("GET", "/v1/auth/me", access_token=access_token))

    def register(self, *, username: str, email: str, password: str) -> str:
        """``POST /v1/auth/register``: the new player's ``user_id``."""
        data = self._request(
            "POST", "/v1/auth/register", body={"username": username, "email": email, "password": password}
        )
        return str(data["user_id"])

    def login(self, *, username: str, password: str) -> TokenPair:
        return TokenPair.from_data(
            self._request("POST", "/v1/auth/login", body={"username": username, "password": password})
        )

    def refresh(self, refresh_token: str) -> TokenPair:
        return TokenPair.from_data(self._request("POST", "/v1/auth/refresh", body={"refresh": refresh_token}))

    def health(self) -> dict[str, Any]:
        """``/healthz``: ``{"status": "alive", "version": ...}``."""
        data = self._request("GET", "/healthz")
        if not isinstance(data, dict):
            raise ScoreboardError(0, "unexpected_answer", "healthz answered without data")
        return data
