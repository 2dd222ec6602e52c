"""CPU an idle live-board process pays for publishes meant for nobody it holds.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/sb_prof REDIS_URL=redis://127.0.0.1:6379/13 \\
        .venv/bin/python -m bench.hub_idle_cost --rates 200 1000

Starts one uvicorn process of the app, opens one spectator socket on the global board (so the
process's hub subscribes), then publishes for ``--seconds`` at each rate, in turn: rank updates of
random players (on each player's own channel) and 1 KB frames of a board that socket does not watch
(on that board's channel), the way the score path publishes them. Prints the process's CPU (user +
system, /proc) per second and per message. With every board and player on a channel of its own, a
process subscribes to none of these, so the figure is what the idle loop costs; before 37e8894 all
of them arrived on two shared channels and were read and dropped (2026-12-07: 0.041 and 0.044 cores
at 200/s).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PORT = 8711


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def publishes() -> dict[str, Callable[[int], tuple[bytes, bytes]]]:
    from realtime.hub import board_channel, player_channel

    def rank_update(n: int) -> tuple[bytes, bytes]:
        user = str(uuid.uuid4())
        body = {"type": "rank_update", "board": "global", "period": "all", "user_id": user, "rank": n, "score": n}
        return player_channel(user), json.dumps(body).encode()

    def board_frame(n: int) -> tuple[bytes, bytes]:
        seq = 10**15 + n
        body = {"type": "leaderboard_update", "seq": seq, "board": "weekly", "pad": "x" * 900}
        return board_channel("weekly"), b"%d\n" % seq + json.dumps(body).encode()

    return {"rank updates of other players": rank_update, "frames of an unwatched board": board_frame}


async def measure(pid: int, rates: list[int], seconds: float) -> None:
    import redis
    import websockets
    from django.conf import settings

    for _ in range(150):
        try:
            origin = websockets.Origin(f"http://127.0.0.1:{PORT}")
            ws = await websockets.connect(f"ws://127.0.0.1:{PORT}/v1/realtime", origin=origin)
            break
        except OSError:
            await asyncio.sleep(0.2)
    else:
        raise SystemExit("the ASGI process did not answer")
    await ws.recv()  # its snapshot: the hub is subscribed
    client = redis.Redis.from_url(settings.REDIS_URL)
    print("| publishes | rate/s | cores | us per message |")
    print("|---|---|---|---|")
    for name, message in publishes().items():
        for rate in rates:
            before, started, sent = cpu_seconds(pid), time.time(), 0
            while time.time() - started < seconds:
                client.publish(*message(sent))
                sent += 1
                await asyncio.sleep(max(0.0, started + sent / rate - time.time()))
            used = cpu_seconds(pid) - before
            print(f"| {name} | {rate} | {used / seconds:.3f} | {used * 1e6 / sent:.0f} |", flush=True)
    await ws.close()
    client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rates", type=int, nargs="+", default=[200, 1000])
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    if not os.environ.get("REDIS_URL"):
        raise SystemExit("set REDIS_URL (and DATABASE_URL): the hub only subscribes with Redis")
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "scoreboard.settings")
    django.setup()
    env = dict(os.environ, LOG_LEVEL="WARNING")
    argv = [str(ROOT / ".venv" / "bin" / "uvicorn"), "scoreboard.asgi:application", "--port", str(PORT)]
    server = subprocess.Popen(  # noqa: S603
        [*argv, "--log-level", "warning", "--no-access-log"],
        cwd=ROOT,
        env=env,
    )
    try:
        asyncio.run(measure(server.pid, args.rates, args.seconds))
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
