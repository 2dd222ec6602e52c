"""Which ASGI server for the WebSocket/SSE path: uvicorn or daphne? Measured, not guessed.

    DATABASE_URL=... REDIS_URL=... .venv/bin/python deploy/compare_asgi.py --ws 1000 --sse 200 --messages 20

For each server it starts one process serving ``scoreboard.asgi:application`` (the real
``/v1/realtime`` consumer and ``/v1/leaderboard/stream`` view), connects the clients, publishes
``--messages`` 1 KB board frames on the hub's Redis channel (the production delivery path) and
reports the connect time and, per message, the time until the last client had it (p50/p95),
plus the server's resident memory. Clients and server share this machine, the same for both.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
PORT = 8480
CONNECT_BATCH = 50


def server_command(server: str, port: int) -> list[str]:
    bin_dir = Path(sys.executable).parent
    if server == "daphne":
        return [str(bin_dir / "daphne"), "-v", "0", "-b", "127.0.0.1", "-p", str(port), "scoreboard.asgi:application"]
    return [
        str(bin_dir / "uvicorn"),
        "scoreboard.asgi:application",
        "--port",
        str(port),
        "--no-access-log",
        "--lifespan",
        "off",
        "--ws",  # as deploy/serve.py
        "websockets-sansio",
        "--ws-per-message-deflate",
        "false",
        "--log-level",
        "warning",
    ]


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def frame(seq: int) -> bytes:
    body = {"type": "leaderboard_update", "seq": seq, "published_at": time.time() * 1000, "pad": "x" * 900}
    return json.dumps(body).encode()


async def measure(server: str, ws_clients: int, sse_clients: int, messages: int) -> dict[str, Any]:
    import httpx
    import redis.asyncio as aioredis
    import websockets

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "scoreboard.settings")
    import django

    django.setup()
    from realtime.hub import board_channel

    env = dict(os.environ, LOG_LEVEL="WARNING", RATE_LIMIT_ENABLED="0")
    proc = subprocess.Popen(server_command(server, PORT), cwd=ROOT, env=env)  # noqa: S603
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{PORT}/healthz", timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)
        idle_rss = rss_kb(proc.pid)
        latencies: dict[int, list[float]] = {}
        expected = ws_clients + sse_clients
        done: dict[int, asyncio.Event] = {i: asyncio.Event() for i in range(1, messages + 1)}

        def record(raw: str) -> None:
            if '"pad"' not in raw:
                return
            msg = json.loads(raw)
            seq = msg["seq"]
            latencies.setdefault(seq, []).append(time.time() * 1000 - msg["published_at"])
            if len(latencies[seq]) == expected and seq in done:
                done[seq].set()

        async def ws_reader(ws: Any) -> None:
            async for raw in ws:
                record(raw if isinstance(raw, str) else raw.decode())

        started = time.perf_counter()
        sockets: list[Any] = []
        origin = f"http://127.0.0.1:{PORT}"
        for start in range(0, ws_clients, CONNECT_BATCH):
            count = min(ws_clients, start + CONNECT_BATCH) - start
            sockets += await asyncio.gather(
                *(
                    websockets.connect(f"ws://127.0.0.1:{PORT}/v1/realtime", origin=origin, max_queue=None)  # type: ignore[arg-type]
                    for _ in range(count)
                )
            )
        ws_connect_s = time.perf_counter() - started
        tasks = [asyncio.create_task(ws_reader(ws)) for ws in sockets]

        limits = httpx.Limits(max_connections=sse_clients + 10)
        client = httpx.AsyncClient(timeout=httpx.Timeout(None), limits=limits)
        sse_ready = asyncio.Semaphore(0)

        async def sse_reader() -> None:
            async with client.stream("GET", f"http://127.0.0.1:{PORT}/v1/leaderboard/stream") as response:
                sse_ready.release()
                async for line in response.aiter_lines():
                    if line.startswith("data:"):
                        record(line[5:].strip())

        started = time.perf_counter()
        tasks += [asyncio.create_task(sse_reader()) for _ in range(sse_clients)]
        for _ in range(sse_clients):
            await sse_ready.acquire()
        sse_connect_s = time.perf_counter() - started
        await asyncio.sleep(1.0)
        loaded_rss = rss_kb(proc.pid)

        redis = aioredis.Redis.from_url(os.environ["REDIS_URL"])
        last_delivery: list[float] = []
        missed = 0
        for seq in range(1, messages + 1):
            await redis.publish(board_channel("global"), b"%d\n" % (10**9 + seq) + frame(seq))
            try:
                await asyncio.wait_for(done[seq].wait(), timeout=10)
            except TimeoutError:
                missed += 1
            if latencies.get(seq):
                last_delivery.append(max(latencies[seq]))
            await asyncio.sleep(0.2)
        await redis.aclose()
        for task in tasks:
            task.cancel()
        for ws in sockets:
            await ws.close()
        await client.aclose()
        last_delivery.sort()
        return {
            "server": server,
            "ws_clients": ws_clients,
            "sse_clients": sse_clients,
            "ws_connect_s": round(ws_connect_s, 2),
            "sse_connect_s": round(sse_connect_s, 2),
            "delivery_last_client_p50_ms": round(statistics.median(last_delivery), 1) if last_delivery else None,
            "delivery_last_client_p95_ms": round(last_delivery[int(0.95 * (len(last_delivery) - 1))], 1)
            if last_delivery
            else None,
            "messages_incomplete": missed,
            "rss_idle_mb": round(idle_rss / 1024, 1),
            "rss_loaded_mb": round(loaded_rss / 1024, 1),
        }
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ws", type=int, default=1000)
    parser.add_argument("--sse", type=int, default=200)
    parser.add_argument("--messages", type=int, default=20)
    parser.add_argument("--servers", nargs="+", default=["uvicorn", "daphne"])
    args = parser.parse_args()
    for server in args.servers:
        print(json.dumps(asyncio.run(measure(server, args.ws, args.sse, args.messages))), flush=True)


if __name__ == "__main__":
    main()
