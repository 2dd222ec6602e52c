"""PostgreSQL connections under the real ASGI server: 200 concurrent requests, each in a thread of
its own, share a pool of DB_POOL_MAX_SIZE connections instead of opening one each ("sorry, too many
clients already" once they outnumber max_connections)."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from django.conf import settings
from django.db import connection

from scores import action_tokens
from tests.conftest import access_token_for
from tests.factories import PlayerFactory
from tests.realtime.servers import ROOT, session_database_url

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.django_db(transaction=True)]

REQUESTS = 200
PLAYERS = 50
POOL_MAX = 4  # small: the machine's PostgreSQL is shared (max_connections=100)
APP_NAME = "sb-pool-test"


def _connections_of_the_server() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", [APP_NAME])
        return int(cursor.fetchone()[0])


def test_200_concurrent_requests_through_uvicorn_stay_within_the_pool(tmp_path: Path) -> None:
    players = [PlayerFactory.create() for _ in range(PLAYERS)]
    jobs = []
    for i in range(REQUESTS):
        player = players[i % PLAYERS]
        token = action_tokens.mint(user_id=str(player.pk), action_type="LEVEL_COMPLETION", score_increment=1 + i)
        jobs.append((access_token_for(player), token.action_token))

    # The test binds the socket and hands it to uvicorn (--fd): no other run on the machine can take
    # the port between a free-port probe and the server's bind (and answer with another database).
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1024)
    port = listener.getsockname()[1]
    env = {
        **os.environ,
        "DATABASE_URL": session_database_url(),
        "REDIS_URL": settings.REDIS_URL,
        "DB_POOL_MAX_SIZE": str(POOL_MAX),
        "DB_POOL_TIMEOUT": "30",
        "PGAPPNAME": APP_NAME,  # libpq's application_name: tells the server's connections apart
        "RATE_LIMIT_ENABLED": "false",
        "FRAUD_BLOCK_THRESHOLD": "2",
        "FRAUD_FLAG_THRESHOLD": "2",
        "LOG_LEVEL": "WARNING",
    }
    env.pop("DB_POOL", None)
    log = tmp_path / "uvicorn.log"
    server = subprocess.Popen(
        [
            *(sys.executable, "-m", "uvicorn", "scoreboard.asgi:application"),
            *(f"--fd={listener.fileno()}", "--lifespan=off", "--no-access-log"),
        ],
        pass_fds=(listener.fileno(),),
        cwd=ROOT,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    peak = 0
    failures: list[str] = []
    stop = threading.Event()

    def watch() -> None:
        nonlocal peak
        from django.db import connections

        try:
            while not stop.is_set():
                peak = max(peak, _connections_of_the_server())
                time.sleep(0.02)
        finally:
            connections.close_all()

    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert server.poll() is None, log.read_text()[-3000:]
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        watcher = threading.Thread(target=watch)
        watcher.start()

        async def fire() -> list[int]:
            limits = httpx.Limits(max_connections=REQUESTS, max_keepalive_connections=0)
            async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as client:
                start = asyncio.Event()

                async def one(jwt: str, action_token: str) -> int:
                    await start.wait()
                    response = await client.post(
                        "/v1/scores/update",
                        json={"action_token": action_token},
                        headers={"Authorization": f"Bearer {jwt}"},
                    )
                    if response.status_code != 200:
                        failures.append(response.text)
                    return response.status_code

                tasks = [asyncio.create_task(one(*job)) for job in jobs]
                await asyncio.sleep(0.1)
                start.set()
                return await asyncio.gather(*tasks)

        try:
            statuses = asyncio.run(fire())
        finally:
            stop.set()
            watcher.join()
    finally:
        server.terminate()
        server.wait(timeout=15)
        listener.close()

    assert statuses == [200] * REQUESTS, (sorted(set(statuses)), failures[:3])
    assert 1 <= peak <= POOL_MAX, peak
    print(f"\n200 concurrent score updates through uvicorn: peak {peak} PostgreSQL connections (pool max {POOL_MAX})")
