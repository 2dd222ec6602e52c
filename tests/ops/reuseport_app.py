"""A bare ASGI app for tests/ops/test_reuseport.py: each WebSocket is told which process took it
and which peer address that process saw."""

from __future__ import annotations

import json
import os
from typing import Any


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "websocket":
        return
    await receive()
    await send({"type": "websocket.accept"})
    await send({"type": "websocket.send", "text": json.dumps({"pid": os.getpid(), "client": scope["client"]})})
    await send({"type": "websocket.close", "code": 1000})
