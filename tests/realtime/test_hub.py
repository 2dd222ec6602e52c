"""The per-socket mailbox: a slow client skips to the newest snapshot instead of queueing a backlog."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY

from realtime.frames import LEADERBOARD_UPDATE, RANK_UPDATE, Frame
from realtime.hub import PLAYER_BACKLOG, Hub, Mailbox

pytestmark = [pytest.mark.embedded]


def board(seq: int) -> Frame:
    return Frame(LEADERBOARD_UPDATE, seq, b'{"seq":%d}' % seq)


def own(n: int) -> Frame:
    return Frame(RANK_UPDATE, 0, b'{"n":%d}' % n)


def skipped_total() -> float:
    return REGISTRY.get_sample_value("scoreboard_realtime_frames_skipped_total") or 0.0


async def test_a_busy_client_gets_only_the_newest_snapshot():
    box = Mailbox("global")
    before = skipped_total()
    for seq in (5, 6, 7):
        box.offer(board(seq))
    frames = await box.take()
    assert [f.seq for f in frames] == [7]
    assert box.skipped == 2
    assert skipped_total() - before == 2  # operators see slow clients in /metrics
    box.offer(board(6))  # older than what the client already has: never sent
    box.offer(board(8))
    assert [f.seq for f in await box.take()] == [8]


async def test_own_updates_come_first_and_their_backlog_is_bounded():
    box = Mailbox("global")
    box.offer(board(3))
    for n in range(PLAYER_BACKLOG + 5):
        box.offer(own(n))
    frames = await box.take()
    assert [f.kind for f in frames] == [RANK_UPDATE] * PLAYER_BACKLOG + [LEADERBOARD_UPDATE]
    assert frames[0].data == b'{"n":5}'  # the oldest were dropped


async def test_a_stuck_client_does_not_hold_back_the_others():
    hub = Hub()
    stuck, live = Mailbox("global"), Mailbox("global")
    await hub.attach(stuck)
    await hub.attach(live)
    hub.identify(live, "player-1")
    for seq in range(1, 100):
        hub.fan_out_board("global", board(seq))
    hub.fan_out_player("player-1", own(1))
    hub.fan_out_player("player-2", own(2))  # nobody here
    assert [f.kind for f in await live.take()] == [RANK_UPDATE, LEADERBOARD_UPDATE]
    assert [f.seq for f in await stuck.take()] == [99]  # it never read, and holds one frame, not 99
    hub.detach(live)
    hub.fan_out_board("global", board(100))
    assert hub.connections("global") == 1


def test_sse_encoding_ids_only_board_frames():
    assert board(42).sse == b'id: 42\nevent: leaderboard_update\ndata: {"seq":42}\n\n'
    assert own(1).sse == b'event: rank_update\ndata: {"n":1}\n\n'
