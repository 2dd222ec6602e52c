"""``WS /v1/realtime``: the live board over WebSocket.

On connect the current snapshot is sent (after authentication when the board is private). The
client may send ``{"type": "auth", "token": "<jwt>"}`` (answered by ``auth_ok``, or a close with
4401) to also receive its own ``rank_update`` messages, and ``{"type": "ping"}`` (answered by
``pong``). Frames over 4 KB close the socket with 1009; a client sending too fast gets an error,
then a close with 1008. Dead connections are reaped by the server's protocol pings (daphne
``--ping-interval``/``--ping-timeout``, uvicorn ``--ws-ping-interval``/``--ws-ping-timeout``).

Pushed frames do not go through channels' dispatch: the hub writes each one straight to the
socket's ASGI send while the socket keeps up, and a slow socket's mailbox keeps only the newest
snapshot for a task of its own, so a slow client only ever delays itself.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import orjson
from channels.db import database_sync_to_async
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from realtime import services
from realtime.auth import Viewer, read_allowed, token_from_scope, viewer_from_token
from realtime.frames import Frame, message
from realtime.heap import socket_heap
from realtime.hub import Mailbox, get_hub
from realtime.wire import SERVER_SEND, raw_writer
from scoreboard import metrics
from scores.boards import BOARD_ID_MAX_LENGTH, GLOBAL_ID

logger = logging.getLogger(__name__)

MAX_INBOUND_BYTES = 4096
CLOSE_TOO_BIG = 1009
CLOSE_POLICY = 1008
CLOSE_UNAUTHORIZED = 4401
CLOSE_FORBIDDEN = 4403
# Inbound rate: a bucket of INBOUND_BURST messages refilled at INBOUND_PER_SECOND. A client that
# keeps sending with an empty bucket is disconnected after INBOUND_STRIKES refused messages.
INBOUND_BURST = 10
INBOUND_PER_SECOND = 2.0
INBOUND_STRIKES = 20
# A private board gives an unauthenticated socket this long to send its auth message.
AUTH_GRACE_SECONDS = 10.0
# channels would otherwise create a channel-layer channel (and a Redis subscription) per socket.
NO_CHANNEL_LAYER = "realtime-none"


async def _read_snapshot(board: str) -> Frame:
    return await database_sync_to_async(services.board_snapshot_by_name)(board=board)


class LiveBoardConsumer(AsyncWebsocketConsumer):
    channel_layer_alias = NO_CHANNEL_LAYER

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        """channels' ``AsyncConsumer.__call__`` without a channel layer, reading with no extra task.

        channels reads through ``await_many_dispatch``, which wraps every ``receive()`` in a task of
        its own and waits on it with ``asyncio.wait``: a task, a future and their callbacks held by
        every idle socket. With no channel layer there is one source, so it is awaited directly.
        """
        self.scope = scope
        self.channel_layer = None
        self.base_send = send
        try:
            while True:
                await self.dispatch(await receive())
        except StopConsumer:
            pass

    async def connect(self) -> None:
        self.box = Mailbox(GLOBAL_ID)
        self.viewer: Viewer | None = None
        self.feeding = False
        self.grace: asyncio.Task[None] | None = None
        self.expiry: asyncio.Task[None] | None = None
        self.tokens = float(INBOUND_BURST)
        self.refilled = time.monotonic()
        self.strikes = 0
        await self.accept()
        # Counted for the heap's freezes (realtime/heap.py): the socket's objects exist from here on.
        self.heap_token: int | None = socket_heap().opened()
        cookie_token = token_from_scope(self.scope)
        if cookie_token:
            self.viewer = await database_sync_to_async(viewer_from_token)(cookie_token)
            self.box.user_id = self.viewer.user_id if self.viewer else None
            self._watch_expiry()
        if read_allowed(self.viewer):
            await self._start_feed()
        else:
            self.grace = asyncio.create_task(self._close_unless_authenticated())

    async def websocket_disconnect(self, message: dict[str, Any]) -> None:
        """channels' own, without its ``aclose_old_connections()`` after ``disconnect()``.

        That is a hop to the one thread sync code runs in, per socket: a reconnect storm's thousands
        of closes queued one by one behind each other (py-spy, 10,000 sockets closing: two thirds of
        the process's GIL time). This consumer touches the database only through
        ``database_sync_to_async``, which closes old connections itself; it joins no channel groups.
        """
        await self.disconnect(message.get("code", 1005))
        raise StopConsumer()

    async def disconnect(self, code: int) -> None:
        token = getattr(self, "heap_token", None)
        if token is not None:
            self.heap_token = None
            socket_heap().closed(token)
        get_hub().detach(self.box)
        self.box.stop_push()
        for task in (self.grace, self.expiry):
            if task is not None:
                task.cancel()

    # -- outbound ---------------------------------------------------------------------------
    async def _start_feed(self) -> None:
        """Register with the hub, send the current snapshot, then let the hub write what it delivers."""
        if self.feeding:
            return
        self.feeding = True
        hub = get_hub()
        await hub.attach(self.box)
        snapshot = await hub.snapshot(self.box.board, _read_snapshot)
        self.box.last_seq = max(self.box.last_seq, snapshot.seq)
        await self.send(text_data=snapshot.text)
        # Frames that arrived meanwhile go next; later ones are written from the hub's fan-out.
        self.box.start_push(self.base_send, raw_writer(self.scope.get(SERVER_SEND)))

    async def _close_unless_authenticated(self) -> None:
        await asyncio.sleep(AUTH_GRACE_SECONDS)
        if not self.feeding:
            await self._refuse(CLOSE_UNAUTHORIZED, "auth_required", "This board requires authentication.")

    def _watch_expiry(self) -> None:
        """On a private board a socket lives no longer than the token that opened it."""
        if self.expiry is not None:
            self.expiry.cancel()
            self.expiry = None
        if settings.LEADERBOARD_REQUIRE_AUTH and self.viewer is not None and self.viewer.expires_at is not None:
            self.expiry = asyncio.create_task(self._close_at(self.viewer.expires_at))

    async def _close_at(self, expires_at: float) -> None:
        await asyncio.sleep(max(0.0, expires_at - time.time()))
        await self._refuse(CLOSE_UNAUTHORIZED, "token_expired", "The token expired; authenticate again.")

    async def _error(self, code: str, text: str) -> None:
        await self.send(text_data=message("error", code=code, message=text))

    async def _refuse(self, close_code: int, code: str, text: str) -> None:
        await self._error(code, text)
        await self.close(code=close_code)

    # -- inbound ----------------------------------------------------------------------------
    async def dispatch(self, message: dict[str, Any]) -> None:
        # channels' dispatch closes old DB connections (a thread hop) before every message;
        # handlers that touch the database go through database_sync_to_async, which does it.
        handler = getattr(self, message["type"].replace(".", "_"), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    def _take_token(self) -> bool:
        now = time.monotonic()
        self.tokens = min(INBOUND_BURST, self.tokens + (now - self.refilled) * INBOUND_PER_SECOND)
        self.refilled = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        self.strikes += 1
        return False

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        size = len(bytes_data) if bytes_data is not None else len((text_data or "").encode())
        if size > MAX_INBOUND_BYTES:
            await self.close(code=CLOSE_TOO_BIG)
            return
        if not self._take_token():
            if self.strikes >= INBOUND_STRIKES:
                await self._refuse(CLOSE_POLICY, "rate_limited", "Too many messages; disconnecting.")
            elif self.strikes == 1 or self.strikes % 5 == 0:
                await self._error("rate_limited", "Too many messages; this one was ignored.")
            return
        if text_data is None:
            await self._error("invalid_message", "Send JSON text frames, not binary.")
            return
        try:
            payload = orjson.loads(text_data)
        except orjson.JSONDecodeError:
            await self._error("invalid_json", "The message is not valid JSON.")
            return
        kind = payload.get("type") if isinstance(payload, dict) else None
        if kind == "auth":
            await self._authenticate(payload.get("token"))
        elif kind == "ping":
            await self.send(text_data=message("pong"))
        elif kind == "subscribe":
            await self._subscribe(payload.get("board"))
        elif not isinstance(kind, str):
            await self._error("invalid_message", 'Messages are JSON objects with a "type".')
        else:
            await self._error("unknown_type", "Unknown message type; expected auth, subscribe or ping.")

    async def _subscribe(self, board: object) -> None:
        """Switch this socket to another board: from now on it gets that board's snapshots only."""
        board_id = GLOBAL_ID if board is None else board
        if not isinstance(board_id, str) or len(board_id) > BOARD_ID_MAX_LENGTH:
            await self._error("unknown_board", "board must be the id of an active board.")
            return
        spec = await database_sync_to_async(services.board_by_name)(board_id)
        if spec is None:
            await self._error("unknown_board", f"No active board {board_id!r}.")
            return
        if spec.id == self.box.board:
            await self.send(text_data=message("subscribed", board=spec.id))
            return
        hub = get_hub()
        if not self.feeding:  # not reading yet (a private board before auth): just remember the board
            self.box.board = spec.id
            await self.send(text_data=message("subscribed", board=spec.id))
            return
        # Move the socket in the hub (its writer stays as it is), then send the new board's
        # current snapshot; frames of the new board that arrive meanwhile follow it.
        hub.move(self.box, spec.id)
        self.box.last_seq = 0
        await hub.board_confirmed(spec.id)  # the board's channel first, then its snapshot: nothing between is missed
        await self.send(text_data=message("subscribed", board=spec.id))
        snapshot = await hub.snapshot(spec.id, _read_snapshot)
        if snapshot.seq >= self.box.last_seq:
            self.box.last_seq = snapshot.seq
            await self.send(text_data=snapshot.text)

    async def _authenticate(self, token: object) -> None:
        viewer = await database_sync_to_async(viewer_from_token)(token) if isinstance(token, str) else None
        if viewer is None:
            metrics.FAILED_AUTH.labels(reason="websocket_invalid_token").inc()
            await self._refuse(CLOSE_UNAUTHORIZED, "invalid_token", "The token is invalid, expired or revoked.")
            return
        if not read_allowed(viewer):
            await self._refuse(CLOSE_FORBIDDEN, "insufficient_scope", "The token does not grant read:scores.")
            return
        self.viewer = viewer
        self._watch_expiry()
        hub = get_hub()
        hub.identify(self.box, viewer.user_id)
        await hub.player_confirmed(viewer.user_id)  # its rank updates are heard from auth_ok on
        await self.send(text_data=message("auth_ok", user_id=viewer.user_id))
        await self._start_feed()
