"""Bare ``websockets`` broadcast server: the baseline for live delivery.

Every connected socket gets a frame of ``--frame-bytes`` (shaped like a leaderboard_update, with
the same ``published_at`` epoch-ms field) ``--rate`` times a second via ``websockets.broadcast``.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import time

import orjson
from websockets.asyncio.server import ServerConnection, broadcast, serve

from bench.topology import raise_nofile


def frame(seq: int, size: int) -> str:
    head = {"type": "leaderboard_update", "seq": seq, "published_at": round(time.time() * 1000, 3), "pad": ""}
    raw = orjson.dumps(head)
    head["pad"] = "x" * max(0, size - len(raw))
    return orjson.dumps(head).decode()


async def main(port: int, rate: float, size: int) -> None:
    raise_nofile()
    clients: set[ServerConnection] = set()

    async def handler(ws: ServerConnection) -> None:
        clients.add(ws)
        try:
            await ws.send(frame(0, size))
            await ws.wait_closed()
        finally:
            clients.discard(ws)

    # Broadcasting starts on SIGUSR1, once the harness has connected every client (as with the app,
    # where updates only start flowing after the clients are in).
    started = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, started.set)
    async with serve(handler, "127.0.0.1", port, backlog=8192, compression=None, open_timeout=60):
        await started.wait()
        seq = 0
        interval = 1.0 / rate
        next_at = time.perf_counter()
        while True:
            next_at += interval
            await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
            seq += 1
            if clients:
                broadcast(clients, frame(seq, size))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--rate", type=float, default=10.0)
    parser.add_argument("--frame-bytes", type=int, default=1024)
    args = parser.parse_args()
    import uvloop

    uvloop.run(main(args.port, args.rate, args.frame_bytes))
