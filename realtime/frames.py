"""Wire frames of the live board, serialised once per change and shared by every socket.

A ``Frame`` holds the JSON bytes of one message; the WebSocket text (and its ASGI send event) and
the SSE encoding are derived lazily, once, and then reused for every client of the process.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass

import orjson

from realtime.wire import text_frame

LEADERBOARD_UPDATE = "leaderboard_update"
RANK_UPDATE = "rank_update"
# Sent on the player channel when the player's sessions are revoked (ban, sign out everywhere):
# each process closes that player's sockets after writing this error.
SESSION_REVOKED = "session_revoked"
SESSION_REVOKED_DATA = orjson.dumps(
    {"type": "error", "code": SESSION_REVOKED, "message": "This session was signed out; log in again."}
)

# The seq is spliced between these two parts so a publisher can serialise before it knows the
# seq (Redis assigns it atomically with the publish).
SEQ_HEAD = b'{"type":"leaderboard_update","seq":'


@dataclass(frozen=True, eq=False)
class Frame:
    kind: str
    seq: int
    data: bytes

    @functools.cached_property
    def text(self) -> str:
        return self.data.decode()

    @functools.cached_property
    def ws_message(self) -> dict[str, str]:
        # The ASGI ``websocket.send`` event, one for every socket of the process: senders must not change it.
        return {"type": "websocket.send", "text": self.text}

    @functools.cached_property
    def ws_wire(self) -> bytes:
        # The whole WebSocket frame as it goes on the wire (unmasked: the same for every socket).
        return text_frame(self.data)

    @functools.cached_property
    def sse(self) -> bytes:
        # JSON from orjson never contains a raw newline, so one data: line is enough. Only board
        # snapshots carry an id: a player's own update must not move the client's Last-Event-ID.
        if self.kind == LEADERBOARD_UPDATE:
            return b"id: %d\nevent: %s\ndata: %s\n\n" % (self.seq, self.kind.encode(), self.data)
        return b"event: %s\ndata: %s\n\n" % (self.kind.encode(), self.data)


def published_at_ms() -> float:
    """Server publish time in epoch milliseconds; clients and benchmarks measure delivery with it."""
    return int(time.time() * 1_000_000) / 1000  # microsecond precision, cheaper than round()


def board_tail(
    *, board: str, period: str, rows: list[dict[str, object]], total_players: int, last_updated: str | None
) -> bytes:
    """Everything of a leaderboard_update after its seq: ``,"board":...}``."""
    body = orjson.dumps(
        {
            "board": board,
            "period": period,
            "published_at": published_at_ms(),
            "leaderboard": rows,
            "total_players": total_players,
            "last_updated": last_updated,
        }
    )
    return b"," + body[1:]


def board_frame(*, seq: int, tail: bytes) -> Frame:
    return Frame(LEADERBOARD_UPDATE, seq, SEQ_HEAD + str(seq).encode() + tail)


def rank_frame(*, user_id: str, board: str, period: str, rank: int | None, old_rank: int | None, score: int) -> Frame:
    data = orjson.dumps(
        {
            "type": RANK_UPDATE,
            "board": board,
            "period": period,
            "user_id": user_id,
            "rank": rank,
            "old_rank": old_rank,
            "score": score,
            "published_at": published_at_ms(),
        }
    )
    return Frame(RANK_UPDATE, 0, data)


def revoked_frame() -> Frame:
    return Frame(SESSION_REVOKED, 0, SESSION_REVOKED_DATA)


def player_frame(data: bytes) -> Frame:
    """A frame received on the player channel: a rank update, or the revocation of the sessions."""
    return Frame(SESSION_REVOKED if data == SESSION_REVOKED_DATA else RANK_UPDATE, 0, data)


def message(kind: str, **fields: object) -> str:
    """A small control message (auth_ok, error, pong) for one socket."""
    return orjson.dumps({"type": kind, **fields}).decode()
