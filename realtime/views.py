"""The spectator page and ``GET /v1/leaderboard/stream`` (Server-Sent Events).

The stream needs an ASGI server (daphne or uvicorn): it is an async generator that stays open.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from asgiref.sync import sync_to_async
from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBase, StreamingHttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET

from realtime import services
from realtime.auth import read_allowed, token_from_request, viewer_from_token
from realtime.frames import SESSION_REVOKED
from realtime.hub import Mailbox, get_hub
from scoreboard.errors import error_response
from scores import selectors
from scores.boards import GLOBAL_ID, BoardSpec

SSE_KEEPALIVE_SECONDS = 15.0
SSE_RETRY_MS = 3000


@require_GET
def board_page(request: HttpRequest, board_id: str = GLOBAL_ID) -> HttpResponse:
    """The live page of one board (``/`` is ``global``), server-rendered, then kept live."""
    spec = services.board_by_name(board_id)
    if spec is None:
        raise Http404(f"No active board {board_id!r}.")
    viewer = viewer_from_token(token_from_request(request)) if settings.LEADERBOARD_REQUIRE_AUTH else None
    if not read_allowed(viewer):
        return render(request, "board_login.html", status=401)
    period = spec.period_at(timezone.now())
    page = selectors.board_page(spec=spec, period=period, limit=services.TOP_SIZE)
    return render(
        request,
        "board.html",
        {
            "page": page,
            "board": spec,
            "period": period,
            "boards": selectors.boards_active(),
            "seq": services.current_seq(board=spec),
            "require_auth": settings.LEADERBOARD_REQUIRE_AUTH,
            "live_url": settings.REALTIME_PUBLIC_URL,
        },
    )


async def _events(box: Mailbox, board: BoardSpec) -> AsyncIterator[bytes]:
    hub = get_hub()
    await hub.attach(box)
    try:
        # Whatever Last-Event-ID the client sends, the current snapshot brings it up to date.
        snapshot = await sync_to_async(services.board_snapshot)(board=board)
        box.last_seq = max(box.last_seq, snapshot.seq)
        yield b"retry: %d\n" % SSE_RETRY_MS + snapshot.sse
        while True:
            try:
                async with asyncio.timeout(SSE_KEEPALIVE_SECONDS):
                    frames = await box.take()
            except TimeoutError:
                yield b": keep-alive\n\n"
                continue
            for frame in frames:
                yield frame.sse
                if frame.kind == SESSION_REVOKED:
                    return  # the player was signed out (ban, sign out everywhere): the stream ends
    finally:
        hub.detach(box)


@csrf_exempt  # read-only; a wrong method gets the JSON 405, not the CSRF page
async def leaderboard_stream(request: HttpRequest) -> HttpResponseBase:
    if request.method != "GET":
        return error_response(405, "method_not_allowed", f"Method {request.method} is not allowed here.")
    viewer = None
    token = token_from_request(request)
    if token:
        viewer = await sync_to_async(viewer_from_token)(token)
    if settings.LEADERBOARD_REQUIRE_AUTH and viewer is None:
        return error_response(401, "not_authenticated", "This board requires a valid access token.")
    if not read_allowed(viewer):
        return error_response(403, "permission_denied", "The token does not grant read:scores.")
    board_id = request.GET.get("board") or GLOBAL_ID
    spec = await sync_to_async(services.board_by_name)(board_id[:128])
    if spec is None:
        return error_response(404, "unknown_board", f"No active board {board_id[:64]!r}.")
    box = Mailbox(spec.id)
    if viewer is not None:
        box.user_id = viewer.user_id
    response = StreamingHttpResponse(_events(box, spec), content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # nginx: do not buffer the stream
    return response
