"""The service on a real 3-node Redis Cluster (tests/redis_cluster.py), compared with one Redis.

Each test points every Redis caller at the cluster the way ``REDIS_CLUSTER_URL`` does (the
data-plane URL, the caches) and runs the real paths through the API: score updates on three boards
that live on three different nodes, the reads (top, pages by cursor, around a player, standings),
the drift check and the rebuild, the rate limits and the live publish. Results must equal what a
single Redis gives from the same PostgreSQL rows, and no Redis error may have been swallowed on the
way (callers degrade to PostgreSQL on any Redis error, so a CROSSSLOT would otherwise pass quietly).
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis as redis_lib
from rest_framework.test import APIClient

from accounts import cards
from accounts.models import User
from realtime import hub
from scoreboard import redis as sb_redis
from scores import board_services, ranking, registry, selectors
from scores import services as score_services
from scores.boards import ALL_TIME_KEY, GLOBAL_SPEC
from tests.conftest import access_token_for, submit, use_redis
from tests.factories import PlayerFactory

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

# (player, increment) in submission order: ties on totals (300 = 100 + 200 = 300) exercise the order rule.
SUBMISSIONS = [(0, 300), (1, 100), (2, 250), (1, 200), (3, 50), (4, 300), (5, 120), (3, 400), (6, 80), (7, 300)]
PLAYERS = 8


@pytest.fixture
def no_swallowed_redis_errors(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Fail when a Redis error was logged (an error reply, or a caller that fell back to PostgreSQL)."""
    caplog.set_level(logging.WARNING)
    yield
    bad = [
        r.getMessage()
        for r in caplog.records
        if (r.name == "scoreboard.redis" and r.levelno >= logging.ERROR)
        or "unavailable" in r.getMessage()  # "redis unavailable; ...", "rate-limit counters unavailable"
        or "circuit opened" in r.getMessage()
    ]
    assert bad == [], bad


def _boards_on_distinct_nodes(cluster: Any) -> list[str]:
    """Two board ids whose slots, with global's, sit on three different nodes."""
    taken = {cluster.owner_of(ranking.index_keys("global", ALL_TIME_KEY)[0])}
    chosen: list[str] = []
    for n in range(200):
        board_id = f"arena-{n}"
        owner = cluster.owner_of(ranking.index_keys(board_id, ALL_TIME_KEY)[0])
        if owner not in taken:
            taken.add(owner)
            chosen.append(board_id)
        if len(chosen) == 2:
            return chosen
    raise AssertionError("no board ids found on the other nodes")


def _create_boards(board_ids: list[str]) -> None:
    for board_id in board_ids:
        board_services.board_create(board_id=board_id, title=board_id)
    registry.boards_cache_clear()  # on_commit never runs inside the test's transaction


def _play(mint: Callable[..., str]) -> tuple[list[User], list[dict[str, Any]]]:
    players = [PlayerFactory.create(username=f"cl{i}") for i in range(PLAYERS)]
    clients: dict[int, APIClient] = {}
    answers = []
    for i, increment in SUBMISSIONS:
        client = clients.setdefault(i, APIClient())
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {access_token_for(players[i])}")
        response = submit(client, mint(players[i], increment))
        assert response.status_code == 200, response.content
        answers.append(response.json()["data"])
    return players, answers


def _pages(client: APIClient, board_id: str, limit: int = 3) -> list[dict[str, Any]]:
    pages, cursor = [], ""
    while True:
        url = f"/v1/boards/{board_id}/entries?limit={limit}" + (f"&cursor={cursor}" if cursor else "")
        response = client.get(url)
        assert response.status_code == 200, response.content
        page = response.json()["data"]
        cursor = page["next_cursor"]
        # A cursor is signed with the second it was made in: compare what it points at, not when.
        pages.append({**page, "next_cursor": cursor.split(":")[0] if cursor else None})
        if not cursor:
            return pages


def _reads(board_ids: list[str], players: list[User]) -> dict[str, Any]:
    """Everything a spectator and a player can read, as JSON."""
    spectator = APIClient()
    out: dict[str, Any] = {"top": spectator.get("/v1/leaderboard?limit=5").json()}
    for board_id in ["global", *board_ids]:
        out[f"pages:{board_id}"] = _pages(spectator, board_id)
        for player in (players[1], players[6]):
            out[f"around:{board_id}:{player.pk}"] = spectator.get(
                f"/v1/boards/{board_id}/around/{player.pk}?radius=2"
            ).json()
    for player in players:
        out[f"standings:{player.pk}"] = spectator.get(f"/v1/players/{player.pk}/standings").json()
    own = APIClient()
    own.credentials(HTTP_AUTHORIZATION=f"Bearer {access_token_for(players[3])}")
    out["me"] = own.get("/v1/players/me/standings").json()
    return out


def test_the_cluster_has_three_primaries_and_the_keys_spread_as_designed(on_cluster: Any) -> None:
    client = sb_redis.get_redis()
    assert client is not None and sb_redis.is_cluster(client)
    assert len(sb_redis.servers_of(client)) == 3
    assert sb_redis.redis_state() == "ok"
    # Every key of a board is in its slot; every before-write key in the gate's.
    keys = [*ranking.index_keys("global", ALL_TIME_KEY), f"{ranking.board_tag('global')}:rt:seq"]
    assert len({on_cluster.owner_of(k) for k in keys}) == 1
    gate = [
        sb_redis.gate_key("fraud", "p", "u1"),
        sb_redis.gate_key("nonce", "n"),
        f"{sb_redis.GATE_TAG}:1:rl:x",
        cards.card_key("u1"),  # the player card, read by the pre-write script
    ]
    assert len({on_cluster.owner_of(k) for k in gate}) == 1


def test_updates_and_reads_on_the_cluster_equal_one_redis(
    db: None, on_cluster: Any, settings: Any, standalone_url: str, mint: Any, no_swallowed_redis_errors: None
) -> None:
    board_ids = _boards_on_distinct_nodes(on_cluster)
    _create_boards(board_ids)
    players, answers = _play(mint)

    # Every update answered for the three boards, with ranks from the cluster's index.
    assert all({b["board"] for b in a["boards"]} == {"global", *board_ids} for a in answers)
    assert answers[-1]["boards"][0]["new_rank"] is not None
    # The index of each board is on its own node, complete.
    for board_id in ["global", *board_ids]:
        z = ranking.index_keys(board_id, ALL_TIME_KEY)[0]
        with contextlib.closing(on_cluster.node(on_cluster.owner_of(z))) as node:
            assert node.zcard(z) == PLAYERS
    # Every player's card is on the gate's node, with the score the last write left (players who
    # submitted twice had a warm card the second time: the pre-write script read it there).
    gate_node = on_cluster.owner_of(cards.card_key(str(players[0].pk)))
    with contextlib.closing(on_cluster.node(gate_node)) as node:
        for i, player in enumerate(players):
            player.refresh_from_db()
            card = node.hgetall(cards.card_key(str(player.pk)))
            assert card[b"s"] == str(player.current_score).encode(), (i, card)
    # A replayed token is refused by the pre-filter (in the gate's slot) like on one server.
    token = mint(players[0], 10)
    own = APIClient()
    own.credentials(HTTP_AUTHORIZATION=f"Bearer {access_token_for(players[0])}")
    assert submit(own, token).status_code == 200
    replayed = submit(own, token)
    assert replayed.status_code == 409, replayed.content

    on_cluster_reads = _reads(board_ids, players)
    assert on_cluster_reads["top"]["data"]["total_players"] == PLAYERS

    # The same rows indexed on one Redis (a rebuild from PostgreSQL) read the same.
    use_redis(settings, standalone_url)
    assert score_services.leaderboard_rebuild() == 3 * PLAYERS
    assert _reads(board_ids, players) == on_cluster_reads


def test_drift_check_and_rebuild_on_the_cluster(
    db: None, on_cluster: Any, mint: Any, no_swallowed_redis_errors: None
) -> None:
    board_ids = _boards_on_distinct_nodes(on_cluster)
    _create_boards(board_ids)
    players, _ = _play(mint)
    before = _reads(board_ids, players)

    # Drift: one player missing from one board, one stale score on another.
    arena = selectors.board_get(board_ids[0])
    assert arena is not None
    index = ranking.redis_index(arena, ALL_TIME_KEY)
    assert index is not None and index.forget(str(players[2].pk))
    stale = ranking.redis_index(GLOBAL_SPEC, ALL_TIME_KEY)
    assert stale is not None
    client = sb_redis.get_redis()
    assert client is not None
    field = ranking.inverted_id(str(players[1].pk))
    meta: bytes | None = client.hget(stale.keys[1], field)  # type: ignore[assignment]
    assert meta is not None
    client.hset(stale.keys[1], field, b"0|" + meta.split(b"|", 1)[1])  # an older version than PostgreSQL's
    report = score_services.leaderboard_drift_check(repair=True)
    assert (report.missing, report.stale, report.repaired) == (1, 1, True)
    again = score_services.leaderboard_drift_check(repair=False)
    assert (again.missing, again.stale, again.extra) == (0, 0, 0)

    # Lost the built mark (a node restarted empty): a rebuild swaps a complete index in.
    client.hdel(index.keys[2], "built")
    assert not index.is_built()
    assert score_services.leaderboard_rebuild() == 3 * PLAYERS
    assert index.is_built()
    assert _reads(board_ids, players) == before


@pytest.mark.parametrize("backend", ["one redis", "cluster"])
def test_rate_limits_answer_the_same(
    db: None,
    backend: str,
    request: pytest.FixtureRequest,
    settings: Any,
    mint: Any,
    no_swallowed_redis_errors: None,
) -> None:
    if backend == "cluster":
        request.getfixturevalue("on_cluster")
    settings.RATE_LIMIT_USER_PER_MINUTE = 3
    player = PlayerFactory.create()
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {access_token_for(player)}")
    statuses = [submit(client, mint(player, 10)).status_code for _ in range(5)]
    assert statuses == [200, 200, 200, 429, 429]
    limited = submit(client, mint(player, 10))
    assert limited.status_code == 429 and 0 < int(limited["Retry-After"]) <= 60
    assert limited.json()["error"]["code"] == "user_rate_limited"

    # The per-IP limit of the whole API (django-ratelimit through the cache).
    settings.RATE_LIMIT_IP_PER_MINUTE = 4
    spectator = APIClient(REMOTE_ADDR="10.9.8.7")
    assert [spectator.get("/v1/leaderboard").status_code for _ in range(6)] == [200] * 4 + [429] * 2


def test_live_publish_reaches_a_subscriber_on_any_node(
    db: None, on_cluster: Any, mint: Any, no_swallowed_redis_errors: None
) -> None:
    board_node = on_cluster.owner_of(ranking.index_keys("global", ALL_TIME_KEY)[0])
    other = next(p for p in on_cluster.ports if p != board_node)
    subscriber = redis_lib.Redis(host="127.0.0.1", port=other, socket_timeout=2).pubsub(ignore_subscribe_messages=True)
    subscriber.subscribe(hub.board_channel("global"))
    try:
        player = PlayerFactory.create(username="live")
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {access_token_for(player)}")
        assert submit(client, mint(player, 777)).status_code == 200
        deadline = time.monotonic() + 5
        frames: list[bytes] = []
        while time.monotonic() < deadline and not any(b'"live"' in f for f in frames):
            message = subscriber.get_message(timeout=0.2)
            if message is not None:
                frames.append(message["data"])
        ours = [f for f in frames if b'"live"' in f]  # (an earlier test's publish may arrive first)
        assert ours, f"no frame of this update reached the other node's subscriber: {frames}"
        seq, payload = ours[0].split(b"\n", 1)
        assert int(seq) > 0
        assert b"777" in payload
    finally:
        subscriber.close()


def _settings_with(env: dict[str, str], code: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "REDIS_CLUSTER_URL", "CELERY_BROKER_URL")}
    return subprocess.run(
        [sys.executable, "-c", f"import django; django.setup(); from django.conf import settings as s; {code}"],
        env={**base, "DJANGO_SETTINGS_MODULE": "scoreboard.settings", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_redis_cluster_url_configures_the_process(redis_cluster: Any) -> None:
    nodes = ",".join(f"127.0.0.1:{p}" for p in redis_cluster.ports)
    shown = _settings_with(
        {"REDIS_CLUSTER_URL": f"redis://{nodes}", "REDIS_URL": "redis://127.0.0.1:6379/7"},
        "from scoreboard.redis import get_redis, is_cluster; "
        "print(s.REDIS_URL, s.CELERY_BROKER_URL, s.CHANNEL_LAYERS['default']['CONFIG']['hosts'][0], "
        "is_cluster(get_redis()), s.CACHES['ratelimit']['KEY_PREFIX'])",
    )
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.split() == [
        f"redis+cluster://{nodes}",
        "redis://127.0.0.1:6379/7",  # Celery's broker: the standalone Redis
        "redis://127.0.0.1:6379/7",
        "True",
        "sb:{gate}",
    ]
    refused = _settings_with({"REDIS_CLUSTER_URL": f"redis://{nodes}"}, "print(s.REDIS_URL)")
    assert refused.returncode != 0 and "Celery has no broker" in refused.stderr
    broker = _settings_with(
        {"REDIS_CLUSTER_URL": f"redis://{nodes}", "CELERY_BROKER_URL": "redis://127.0.0.1:6379/8"},
        "print(s.CELERY_BROKER_URL, s.CELERY_TASK_ALWAYS_EAGER)",
    )
    assert broker.stdout.split() == ["redis://127.0.0.1:6379/8", "False"], broker.stderr
    bad = _settings_with({"REDIS_CLUSTER_URL": "http://nope", "REDIS_URL": "redis://x"}, "print(1)")
    assert bad.returncode != 0 and "REDIS_CLUSTER_URL must look like" in bad.stderr


def test_cluster_urls_parse() -> None:
    address = sb_redis.cluster_address("rediss+cluster://app:s%40cret@10.0.0.1:7000,10.0.0.2/")
    assert address.nodes == (("10.0.0.1", 7000), ("10.0.0.2", 6379))
    assert (address.username, address.password, address.tls) == ("app", "s@cret", True)
    assert address.node_url(1) == "rediss://app:s%40cret@10.0.0.2:6379/0"
    assert sb_redis.cluster_url("redis://a:1,b:2") == "redis+cluster://a:1,b:2"
    with pytest.raises(ValueError):
        sb_redis.cluster_address("redis://a:1")
