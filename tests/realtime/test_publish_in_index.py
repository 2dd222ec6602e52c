"""The live publish that runs inside each board's index write (``realtime.services._LIVE``).

An update publishes the player's rank_update and, when the top changed, the board's
leaderboard_update from the index script itself, in the update's one post-write Redis round trip.
The frame it renders in Lua must be the frame the Python publisher renders (the same rows, ranks,
counts), under every tie policy and sort, and both publishers must agree on the fingerprint of the
top, or a correction would republish what the index script already published.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis as redis_lib
from django.test import override_settings

from accounts.models import User
from realtime import services as live
from realtime.hub import board_channel, player_channel
from scores import board_services, registry
from tests.conftest import submit
from tests.fraud.conftest import NO_FRAUD_BLOCKING

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.redis]


@pytest.fixture
def frames(redis_client: redis_lib.Redis) -> Iterator[Callable[[], list[tuple[bytes, bytes]]]]:
    """Everything published on the board and player channels since the fixture started."""
    pubsub = redis_client.pubsub()
    pubsub.psubscribe(board_channel() + b"*", player_channel() + b"*")  # every board's and player's channel
    while pubsub.get_message(timeout=1.0) is not None:  # the subscribe confirmations
        pass

    def drain() -> list[tuple[bytes, bytes]]:
        out = []
        deadline = time.monotonic() + 0.3
        while time.monotonic() < deadline:
            message = pubsub.get_message(timeout=0.05)
            if message and message["type"] in ("message", "pmessage"):
                out.append((message["channel"], message["data"]))
        return out

    yield drain
    pubsub.close()


def board_frames(published: list[tuple[bytes, bytes]], board: str) -> list[dict[str, Any]]:
    out = []
    for channel, data in published:
        if channel.startswith(board_channel()):
            seq, payload = data.split(b"\n", 1)
            if channel == board_channel(board):
                frame = json.loads(payload)
                assert frame["seq"] == int(seq)
                out.append(frame)
    return out


def rank_frames(published: list[tuple[bytes, bytes]]) -> list[dict[str, Any]]:
    out = []
    for channel, data in published:
        if channel.startswith(player_channel()):
            frame = json.loads(data)
            assert player_channel(frame["user_id"]) == channel  # on that player's own channel
            out.append(frame)
    return out


def python_rendered(board_id: str) -> dict[str, Any]:
    """What the Python publisher would send for the board now (``board_snapshot``)."""
    spec = registry.board_get(board_id)
    assert spec is not None
    return json.loads(live.board_snapshot(board=spec).data)


def comparable(frame: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in frame.items() if k not in ("seq", "published_at")}


@override_settings(RATE_LIMIT_ENABLED=False, **NO_FRAUD_BLOCKING)
@pytest.mark.parametrize(
    ("fields", "action_type", "increments"),
    [
        ({}, "LEVEL_COMPLETION", [50, 70, 50, 90, 70, 50]),
        ({"tie_policy": "competition"}, "LEVEL_COMPLETION", [50, 70, 50, 90, 70, 50]),
        ({"tie_policy": "dense"}, "LEVEL_COMPLETION", [50, 70, 50, 90, 70, 50]),
        (
            {"sort": "asc", "operator": "best", "action_types": ["LAP_TIME"], "tie_policy": "competition"},
            "LAP_TIME",
            [62_000, 58_500, 62_000, 60_100, 58_500],
        ),
    ],
    ids=["first-reached", "competition", "dense", "low-wins-best"],
)
def test_the_frame_published_by_the_index_script_is_the_python_publishers_frame(
    make_player: Callable[..., User],
    client_for: Any,
    mint: Any,
    frames: Any,
    fields: dict[str, Any],
    action_type: str,
    increments: list[int],
) -> None:
    board_services.board_create(board_id="lua-board", title="Lua board", **fields)
    registry.boards_cache_clear()
    names = ["ann", 'bo "the" / \\ best', "chloé 🏁", "dee", "eve", "fay"]
    players = [make_player(username=name) for name in names[: len(increments)]]
    for player, increment in zip(players, increments, strict=True):
        response = submit(client_for(player), mint(player, increment=increment, action_type=action_type))
        assert response.status_code == 200, response.content
    published = frames()
    sent = board_frames(published, "lua-board")
    assert sent, "the board's top changed, so the index script published it"
    assert comparable(sent[-1]) == comparable(python_rendered("lua-board"))
    assert [f["seq"] for f in sent] == sorted({f["seq"] for f in sent})  # increasing, never repeated
    # Every update told its player where they stand, on every board it fed.
    ranks = [f for f in rank_frames(published) if f["board"] == "lua-board"]
    assert [f["user_id"] for f in ranks] == [str(p.pk) for p in players]
    assert all(f["old_rank"] is None and f["rank"] is not None for f in ranks)
    # The Python publisher sees the index script's fingerprint as its own: nothing to republish.
    spec = registry.board_get("lua-board")
    assert spec is not None
    assert live._redis_publisher.publish_board(spec) == 0
    assert board_frames(frames(), "lua-board") == []


@override_settings(RATE_LIMIT_ENABLED=False, **NO_FRAUD_BLOCKING)
def test_an_update_outside_the_top_publishes_only_the_players_rank(
    make_player: Callable[..., User], client_for: Any, mint: Any, frames: Any
) -> None:
    players = [make_player() for _ in range(live.TOP_SIZE + 2)]
    for i, player in enumerate(players):
        assert submit(client_for(player), mint(player, increment=1000 - i)).status_code == 200
    frames()
    last = players[-1]  # 12th: moves up, still outside the top 10
    assert submit(client_for(last), mint(last, increment=1)).status_code == 200
    published = frames()
    assert board_frames(published, "global") == []
    assert [(f["rank"], f["old_rank"]) for f in rank_frames(published)] == [(12, 12)]


@override_settings(RATE_LIMIT_ENABLED=False, **NO_FRAUD_BLOCKING)
def test_a_hidden_player_gets_their_rank_but_cannot_change_the_public_board(
    make_player: Callable[..., User], client_for: Any, mint: Any, frames: Any
) -> None:
    shown = make_player()
    assert submit(client_for(shown), mint(shown, increment=10)).status_code == 200
    hidden = make_player()
    User.objects.filter(pk=hidden.pk).update(is_quarantined=True)
    frames()
    assert submit(client_for(hidden), mint(hidden, increment=500)).status_code == 200
    published = frames()
    assert board_frames(published, "global") == []
    assert [(f["user_id"], f["rank"]) for f in rank_frames(published)] == [(str(hidden.pk), 1)]


@override_settings(RATE_LIMIT_ENABLED=False, **NO_FRAUD_BLOCKING)
def test_an_update_costs_two_redis_round_trips_with_three_boards(
    make_player: Callable[..., User],
    client_for: Any,
    mint: Any,
    redis_commands: Callable[[], list[bytes]],
    three_boards: None,
) -> None:
    """Before the write: limits, replay pre-filter and fraud window in one call; after it: every
    board's index, ranks and live publish in one pipeline."""
    player = make_player()
    client = client_for(player)
    with override_settings(RATE_LIMIT_ENABLED=True):
        assert submit(client, mint(player, increment=5)).status_code == 200  # warm: periods, scripts
        sent = redis_commands()
        response = submit(client, mint(player, increment=7))
    assert response.status_code == 200, response.content
    assert [b["board"] for b in response.json()["data"]["boards"]] == ["global", "day", "week"]
    assert len(sent) == 2, sent
