"""Read-replica routing (scoreboard/replica.py) against real PostgreSQL: a second database and a
real streaming replica.

Most tests use a "replica" that is a database of its own on the shared server, a copy of the test
database taken when the session starts (pg_dump | psql): it holds the migrations' rows and nothing
the tests write afterwards, i.e. a replica that lags forever. What a response shows therefore says
which database served it.

The last test runs a real hot standby: the shared server has no replication entry in its
pg_hba.conf (and its configuration is not ours to change), so tests/pg_replica.py starts a private
primary and a ``pg_basebackup -R`` standby of it, and a process of the service reads through the
router while the standby's replay is paused (lag) and resumed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings
from rest_framework.test import APIClient

from accounts import services as account_services
from accounts.models import GameServerKey, User
from scoreboard.replica import REPLICA, is_replica_read, replica_database
from scores.models import BoardEntry, ScoreHistory
from scores.ranking import redis_index
from tests.conftest import submit
from tests.factories import PlayerFactory
from tests.scoreboard.conftest import _conninfo

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(databases=["default", REPLICA])]


def _token_client(user: User) -> APIClient:
    from tests.conftest import access_token_for

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {access_token_for(user)}")
    return client


@pytest.fixture
def server_key() -> str:
    _, raw = account_services.game_server_key_create(name="game-server")
    return raw


def _exported(client: APIClient, key: str) -> list[str]:
    """The usernames in the global board's CSV export (a PostgreSQL read: no Redis index involved)."""
    response = client.get("/v1/boards/global/export.csv", HTTP_X_API_KEY=key)
    assert response.status_code == 200, response
    body: bytes = b"".join(response.streaming_content)  # type: ignore[attr-defined]
    lines = body.decode().splitlines()[1:]
    return [line.split(",")[2] for line in lines]


def test_spectator_reads_come_from_the_replica_and_writes_go_to_the_primary(
    routed: None, mint: Any, server_key: str
) -> None:
    player = PlayerFactory.create()
    response = submit(_token_client(player), mint(player, 250))
    assert response.status_code == 200, response.content

    # The write is on the primary only: the replica never received a statement.
    assert ScoreHistory.objects.using("default").filter(user=player).count() == 1
    assert ScoreHistory.objects.using(REPLICA).filter(user=player).count() == 0
    assert not User.objects.using(REPLICA).filter(pk=player.pk).exists()

    # The game server's export is a replica read: the replica's copy predates the score. (Its key,
    # like every credential, is checked on the primary: it exists only there.)
    assert not GameServerKey.objects.using(REPLICA).exists()
    assert _exported(APIClient(), server_key) == []
    # A row that exists on the replica only shows up in the export: it was served there.
    ghost = User.objects.using(REPLICA).create(username="only-on-the-replica", email="ghost@example.com")
    BoardEntry.objects.using(REPLICA).create(
        board_id="global",
        period_key="all",
        user=ghost,
        score=5,
        sort_value=-5,
        version=1,
        reached_at=ghost.date_joined,
        updated_at=ghost.date_joined,
    )
    assert _exported(APIClient(), server_key) == ["only-on-the-replica"]


def test_a_players_read_of_their_own_standing_sees_their_write(routed: None, mint: Any, redis_client: Any) -> None:
    player = PlayerFactory.create()
    own = _token_client(player)
    assert submit(own, mint(player, 300)).status_code == 200
    # Standings come from the Redis index while it is trusted; take its "built" mark away so that
    # they come from PostgreSQL (the degraded mode), where the routing decides what is seen.
    index = redis_index()
    assert index is not None and index.is_built()
    redis_client.hdel(index.keys[2], "built")

    response = own.get("/v1/players/me/standings")
    assert response.status_code == 200, response.content
    scores = {s["board"]: s["score"] for s in response.json()["data"]["standings"]}
    assert scores.get("global") == 300  # from the primary: the replica has no such player

    # The same standing read by an anonymous spectator is a replica read (the player is unknown there).
    anonymous = APIClient().get(f"/v1/players/{player.pk}/standings")
    assert anonymous.status_code == 200, anonymous.content
    assert anonymous.json()["data"]["standings"] == []
    assert not index.is_built()  # nothing rebuilt the index from the replica's stale rows


def test_without_the_router_every_read_is_the_primarys(replica_db: str, mint: Any, server_key: str) -> None:
    player = PlayerFactory.create()
    assert submit(_token_client(player), mint(player, 40)).status_code == 200
    assert _exported(APIClient(), server_key) == [player.username]


@pytest.mark.parametrize(
    ("method", "name", "kwargs", "meta", "expected"),
    [
        ("GET", "leaderboard", {}, {}, True),
        ("HEAD", "board-entries", {"board_id": "global"}, {"HTTP_AUTHORIZATION": "Bearer x"}, True),
        ("GET", "board-export", {"board_id": "global"}, {"HTTP_X_API_KEY": "k"}, True),
        ("GET", "board-around", {"board_id": "global", "user_id": "u"}, {}, True),
        ("GET", "board-around", {"board_id": "global", "user_id": "me"}, {"HTTP_AUTHORIZATION": "Bearer x"}, False),
        ("GET", "player-standings", {"user_id": "u"}, {"HTTP_AUTHORIZATION": "Bearer x"}, False),
        ("POST", "boards", {}, {}, False),
        ("GET", "scores-update", {}, {}, False),
        ("GET", None, {}, {}, False),
    ],
)
def test_which_requests_are_replica_reads(
    method: str, name: str | None, kwargs: dict[str, str], meta: dict[str, str], expected: bool
) -> None:
    assert is_replica_read(method, name, kwargs, meta) is expected


def test_the_replica_setting_builds_a_mirrored_alias() -> None:
    primary = settings.DATABASES["default"]
    entry = replica_database("postgres://reader@10.0.0.2:5433/scoreboard", primary)
    assert (entry["HOST"], entry["PORT"], entry["USER"], entry["NAME"]) == ("10.0.0.2", 5433, "reader", "scoreboard")
    assert entry["TEST"] == {"MIRROR": "default"}
    assert entry["OPTIONS"].get("pool") == primary["OPTIONS"].get("pool")


# Run in a process of its own, with DATABASE_URL on the private primary and DATABASE_REPLICA_URL on
# its standby (and no Redis, so every read is a PostgreSQL read the router decides).
_STREAMING_PROBE = r"""
import json, time
import django
django.setup()
from django.db import connections
from django.test import Client
from accounts import services as account_services
from accounts.models import User
from scores import action_tokens

def replayed():
    with connections["default"].cursor() as c:
        c.execute("SELECT pg_current_wal_lsn()")
        lsn = c.fetchone()[0]
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with connections["replica"].cursor() as c:
            c.execute("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", [lsn])
            if c.fetchone()[0]:
                return True
        time.sleep(0.05)
    return False

def replica(sql):
    with connections["replica"].cursor() as c:
        c.execute(sql)
        return c.fetchone()[0]

out = {"in_recovery": replica("SELECT pg_is_in_recovery()")}
player = User.objects.create_user(username="streamer", email="s@example.com", password=None)
_, key = account_services.game_server_key_create(name="probe")
own = Client(HTTP_AUTHORIZATION="Bearer " + account_services.player_tokens_issue(user=player).access)

def score(increment):
    token = action_tokens.mint(user_id=str(player.pk), action_type="LEVEL_COMPLETION", score_increment=increment)
    body = {"action_token": token.action_token}
    return own.post("/v1/scores/update", body, content_type="application/json").status_code

def exported():
    response = Client().get("/v1/boards/global/export.csv", HTTP_X_API_KEY=key)
    return [line.split(",")[3] for line in b"".join(response.streaming_content).decode().splitlines()[1:]]

def own_score():
    standings = own.get("/v1/players/me/standings").json()["data"]["standings"]
    return [s["score"] for s in standings if s["board"] == "global"]

out["first"] = score(100)
out["replayed"] = replayed()
out["export_after_replay"] = exported()
replica("SELECT pg_wal_replay_pause()::text")  # the standby falls behind from here
out["second"] = score(50)
out["export_while_paused"] = exported()
out["own_while_paused"] = own_score()
replica("SELECT pg_wal_replay_resume()::text")
out["replayed_again"] = replayed()
out["export_after_resume"] = exported()
print("RESULT " + json.dumps(out))
"""


@pytest.fixture(scope="module")
def streaming_pair(django_db_setup: None, django_db_blocker: Any) -> Iterator[Any]:
    from tests.pg_replica import ReplicaStartError, streaming_pair

    try:
        with streaming_pair() as pair:
            primary = settings.DATABASES["default"]
            with django_db_blocker.unblock():  # the suite's migrated schema, copied onto the private primary
                dump = subprocess.run(
                    ["pg_dump", "--no-owner", *_conninfo(primary), "-d", primary["NAME"]],
                    check=True,
                    capture_output=True,
                )
            conn = ["-h", "127.0.0.1", "-p", str(pair.primary_port), "-U", "postgres"]
            subprocess.run(["psql", "-X", "-q", *conn, "-d", "postgres", "-c", "CREATE DATABASE sb"], check=True)
            subprocess.run(
                ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", *conn, "-d", "sb"],
                input=dump.stdout,
                check=True,
                capture_output=True,
            )
            yield pair
    except ReplicaStartError as exc:
        pytest.fail(f"the local streaming replica did not start: {exc}")


@pytest.mark.django_db(databases=["default"])
def test_a_real_streaming_replica_serves_spectators_and_lags_behind_the_players_own_reads(
    streaming_pair: Any,
) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "REDIS_CLUSTER_URL")}
    env.update(
        DJANGO_SETTINGS_MODULE="scoreboard.settings",
        DATABASE_URL=streaming_pair.url(streaming_pair.primary_port, "sb"),
        DATABASE_REPLICA_URL=streaming_pair.url(streaming_pair.replica_port, "sb"),
        REDIS_URL="",
        LOG_LEVEL="ERROR",
    )
    done = subprocess.run(
        [sys.executable, "-c", _STREAMING_PROBE], env=env, capture_output=True, text=True, timeout=120
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and lines, done.stderr[-3000:]
    result = json.loads(lines[0][len("RESULT ") :])
    assert result["in_recovery"] is True  # the replica alias is the standby itself
    assert (result["first"], result["replayed"], result["export_after_replay"]) == (200, True, ["100"])
    # Replay paused: the spectator's export (the replica) still shows 100, the player's own read
    # (the primary) already 150 — read your write despite the lag.
    assert (result["second"], result["export_while_paused"], result["own_while_paused"]) == (200, ["100"], [150])
    assert (result["replayed_again"], result["export_after_resume"]) == (True, ["150"])
