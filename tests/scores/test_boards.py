"""Many boards: one submission feeds every board, periods roll over and freeze, player-centric reads,
cursor paging under concurrent writes, and moderation that corrects every board it touched."""

from __future__ import annotations

import datetime as dt
import itertools
import threading
from collections.abc import Callable, Iterator
from typing import Any
from unittest import mock

import pytest
from django.db import connection, connections
from django.test import override_settings
from django.utils import timezone

from accounts.models import User
from scores import board_services, registry, selectors, services
from scores.models import Board, BoardEntry, BoardPeriod, ScoreHistory, UsedNonce
from tests.factories import PlayerFactory
from tests.scores.conftest import UNTHROTTLED
from tests.scores.test_concurrency import _run_in_threads

THREADS = 50
SUBMISSIONS_PER_THREAD = 20


def make_board(board_id: str, **fields: Any) -> Board:
    board = board_services.board_create(board_id=board_id, **fields)
    registry.boards_cache_clear()
    return board


def spec_of(board_id: str):
    spec = registry.board_get(board_id)
    assert spec is not None
    return spec


class Clock:
    """``timezone.now`` under the test's control (tokens keep using the real clock)."""

    def __init__(self, start: dt.datetime) -> None:
        self.now = start

    def __call__(self) -> dt.datetime:
        return self.now


@pytest.fixture
def clock() -> Iterator[Clock]:
    c = Clock(timezone.now())
    with mock.patch("django.utils.timezone.now", c):
        yield c


@pytest.fixture
def three_boards(db: None) -> None:
    make_board("daily", period="daily", title="Daily")
    make_board("weekly", period="weekly", title="Weekly")


# ---------------------------------------------------------------------------------------------
# One submission, every board
# ---------------------------------------------------------------------------------------------
@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_50_threads_x_20_updates_feed_three_boards_exactly(player, mint, unthrottled):
    make_board("daily", period="daily")
    make_board("weekly", period="weekly")
    increments = [
        [1 + (t * SUBMISSIONS_PER_THREAD + i) % 89 for i in range(SUBMISSIONS_PER_THREAD)] for t in range(THREADS)
    ]
    tokens = [[mint(player, increment=inc) for inc in row] for row in increments]

    def work(t: int) -> list[services.ScoreResult]:
        user = User.objects.get(pk=player.pk)
        results = []
        for token in tokens[t]:
            results.append(services.score_submit(user=user, action_token=token))
            # As a request does: give the connection back to the pool (DB_POOL_MAX_SIZE per process).
            connections.close_all()
        return results

    results = _run_in_threads(THREADS, work)

    assert [r for r in results if isinstance(r, BaseException)] == []
    expected = sum(map(sum, increments))
    player.refresh_from_db()
    assert player.current_score == expected
    entries = {e.board_id: e.score for e in BoardEntry.objects.filter(user=player)}
    assert entries == {"global": expected, "daily": expected, "weekly": expected}
    # Every board's chain of old -> new scores has no gap and no repeat (no lost or doubled update).
    for board_id in ("global", "daily", "weekly"):
        news = sorted(b.new_score for r in results for res in r for b in res.boards if b.board == board_id)
        assert len(news) == THREADS * SUBMISSIONS_PER_THREAD == len(set(news))
        assert news[-1] == expected
    # The Redis index of every board holds the final score.
    for board_id in ("global", "daily", "weekly"):
        spec = spec_of(board_id)
        _, found = selectors.standings_of(spec=spec, period=spec.period_at(timezone.now()), user_ids=[str(player.pk)])
        assert found[str(player.pk)].score == expected


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_failure_on_one_board_writes_nothing_on_any_board(player, mint, unthrottled):
    make_board("daily", period="daily")
    make_board("fragile")
    # The database refuses a score of 1,000 or more on "fragile" only.
    with connection.cursor() as cursor:
        cursor.execute(
            "ALTER TABLE board_entries ADD CONSTRAINT test_fragile CHECK (board_id <> 'fragile' OR score < 1000)"
        )
    try:
        assert services.score_submit(user=player, action_token=mint(player, increment=600)).new_score == 600
        token = mint(player, increment=500)
        with pytest.raises(Exception) as refused:
            services.score_submit(user=player, action_token=token)
        assert getattr(refused.value, "status_code", None) == 503
        player.refresh_from_db()
        assert player.current_score == 600
        assert dict(BoardEntry.objects.filter(user=player).values_list("board_id", "score")) == {
            "global": 600,
            "daily": 600,
            "fragile": 600,
        }
        assert ScoreHistory.objects.filter(user=player).count() == 1
        assert UsedNonce.objects.filter(user=player).count() == 1  # the refused token was not claimed
    finally:
        with connection.cursor() as cursor:
            cursor.execute("ALTER TABLE board_entries DROP CONSTRAINT test_fragile")


@pytest.mark.embedded
@pytest.mark.django_db
def test_action_types_choose_the_boards_and_history_says_which(player, mint, unthrottled):
    make_board("achievements", action_types=["ACHIEVEMENT_UNLOCK"])
    make_board("levels", action_types=["LEVEL_COMPLETION"])
    result = services.score_submit(user=player, action_token=mint(player, increment=70))
    assert [b.board for b in result.boards] == ["global", "levels"]
    history = ScoreHistory.objects.get(user=player)
    assert [(b["board"], b["old"], b["new"]) for b in history.boards] == [("global", None, 70), ("levels", None, 70)]


@pytest.mark.embedded
@pytest.mark.django_db
def test_best_and_set_boards_keep_the_best_and_the_latest_submission(player, mint, unthrottled, clock):
    make_board("fastest-lap", sort="asc", operator="best")
    make_board("last-run", operator="set")
    for value in (90, 70, 80):
        clock.now += dt.timedelta(seconds=10)
        services.score_submit(user=player, action_token=mint(player, increment=value))
    lap = BoardEntry.objects.get(user=player, board_id="fastest-lap")
    assert lap.score == 70
    assert BoardEntry.objects.get(user=player, board_id="last-run").score == 80
    assert BoardEntry.objects.get(user=player, board_id="global").score == 240
    # 70 was reached at the second submission; the slower third one did not move it.
    assert lap.reached_at == clock.now - dt.timedelta(seconds=10)


# ---------------------------------------------------------------------------------------------
# Periods
# ---------------------------------------------------------------------------------------------
@pytest.mark.embedded
@pytest.mark.django_db
def test_period_rollover_freezes_yesterday_and_a_write_after_midnight_is_today(make_player, mint, unthrottled, clock):
    make_board("daily", period="daily")
    spec = spec_of("daily")
    alice, bob = make_player(username="alice"), make_player(username="bob")
    midnight = dt.datetime.combine(timezone.now().date() + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC)
    clock.now = midnight - dt.timedelta(seconds=30)
    services.score_submit(user=alice, action_token=mint(alice, increment=300))
    clock.now = midnight - dt.timedelta(milliseconds=1)
    services.score_submit(user=bob, action_token=mint(bob, increment=200))
    clock.now = midnight + dt.timedelta(milliseconds=1)
    after = services.score_submit(user=bob, action_token=mint(bob, increment=50))

    yesterday, today = spec.period_at(midnight - dt.timedelta(days=1)), spec.period_at(midnight)
    assert [b.period for b in after.boards if b.board == "daily"] == [today.key]
    assert after.boards[1].old_score is None and after.boards[1].new_rank == 1
    # The beat task closes yesterday (no request has to arrive) and freezes its ranks.
    clock.now = midnight + dt.timedelta(minutes=1)
    report = board_services.board_periods_maintain(now=clock.now)
    assert report.closed == 1
    status = BoardPeriod.objects.get(board_id="daily", key=yesterday.key)
    assert status.closed_at is not None and status.entry_count == 2
    frozen = dict(
        BoardEntry.objects.filter(board_id="daily", period_key=yesterday.key).values_list(
            "user__username", "final_rank"
        )
    )
    assert frozen == {"alice": 1, "bob": 2}
    previous = selectors.board_page(spec=spec, period=spec.resolve_period("previous", now=clock.now), limit=10)
    assert [(r.username, r.score, r.rank) for r in previous.rows] == [("alice", 300, 1), ("bob", 200, 2)]
    current = selectors.board_page(spec=spec, period=spec.resolve_period("current", now=clock.now), limit=10)
    assert [(r.username, r.score) for r in current.rows] == [("bob", 50)]
    # Later writes never change the frozen period.
    services.score_submit(user=alice, action_token=mint(alice, increment=999))
    again = selectors.board_page(spec=spec, period=yesterday, limit=10)
    assert [(r.username, r.score) for r in again.rows] == [("alice", 300), ("bob", 200)]


@pytest.mark.embedded
@pytest.mark.django_db
def test_the_beat_task_closes_a_period_that_got_no_request_and_prunes_old_archives(player, mint, unthrottled, clock):
    make_board("daily", period="daily", keep_periods=2)
    spec = spec_of("daily")
    start = clock.now
    for day in range(4):
        clock.now = start + dt.timedelta(days=day)
        services.score_submit(user=player, action_token=mint(player, increment=10 + day))
    clock.now = start + dt.timedelta(days=4, minutes=1)
    report = board_services.board_periods_maintain(now=clock.now)
    assert report.closed == 4  # every day closed, the last one with no request after it
    assert report.archives_pruned == 2
    kept = sorted(BoardPeriod.objects.filter(board_id="daily").values_list("key", flat=True))
    assert kept == [spec.period_at(start + dt.timedelta(days=d)).key for d in (2, 3)]
    assert BoardEntry.objects.filter(board_id="daily").count() == 2


# ---------------------------------------------------------------------------------------------
# Player-centric reads
# ---------------------------------------------------------------------------------------------
def _board_with_scores(board_id: str, scores: list[int], clock: Clock, mint: Callable[..., str], **fields: Any):
    make_board(board_id, **fields)
    action_type = (fields.get("action_types") or ["LEVEL_COMPLETION"])[0]
    players = []
    for i, score in enumerate(scores):
        player = PlayerFactory.create(username=f"{board_id}-{i}")
        clock.now += dt.timedelta(seconds=1)
        services.score_submit(user=player, action_token=mint(player, increment=score, action_type=action_type))
        players.append(player)
    return spec_of(board_id), players


@pytest.mark.embedded
@pytest.mark.django_db
def test_around_me_fills_from_the_other_side_at_the_edges(mint, unthrottled, clock):
    spec, players = _board_with_scores("arena", [100 - i for i in range(12)], clock, mint)
    period = spec.period_at(clock.now)

    def around(index: int) -> list[int]:
        me, rows = selectors.around_player(spec=spec, period=period, user_id=str(players[index].pk), above=2, below=2)
        assert me.rank == index + 1
        return [r.rank for r in rows]

    assert around(0) == [1, 2, 3, 4, 5]  # the top: filled from below
    assert around(6) == [5, 6, 7, 8, 9]
    assert around(11) == [8, 9, 10, 11, 12]  # the last rank: filled from above
    standing = selectors.player_standing(spec=spec, period=period, user_id=str(players[11].pk))
    assert (standing.rank, standing.percentile, standing.entry_count) == (12, 0.0, 12)
    assert selectors.player_standing(spec=spec, period=period, user_id=str(players[0].pk)).percentile == 100.0


@pytest.mark.embedded
@pytest.mark.django_db
@pytest.mark.parametrize(
    ("tie_policy", "expected"),
    [("first_reached", [1, 2, 3, 4, 5]), ("competition", [1, 1, 3, 3, 5]), ("dense", [1, 1, 2, 2, 3])],
)
def test_tie_policies_number_equal_scores(tie_policy, expected, mint, unthrottled, clock):
    spec, players = _board_with_scores(
        f"ties-{tie_policy}"[:30].replace("_", "-"), [50, 50, 40, 40, 30], clock, mint, tie_policy=tie_policy
    )
    period = spec.period_at(clock.now)
    rows = selectors.board_page(spec=spec, period=period, limit=10).rows
    assert [r.rank for r in rows] == expected
    assert [r.user_id for r in rows] == [str(p.pk) for p in players]  # earlier first within a tie
    standings = [selectors.player_standing(spec=spec, period=period, user_id=str(p.pk)).rank for p in players]
    assert standings == expected


@pytest.mark.embedded
@pytest.mark.django_db
def test_an_asc_best_board_ranks_the_fastest_lap_first(mint, unthrottled, clock):
    spec, players = _board_with_scores(
        "laps", [62_000, 58_500, 60_100], clock, mint, sort="asc", operator="best", action_types=["LAP_TIME"]
    )
    clock.now += dt.timedelta(seconds=5)
    faster = mint(players[0], increment=57_900, action_type="LAP_TIME")  # a new best
    services.score_submit(user=players[0], action_token=faster)
    clock.now += dt.timedelta(seconds=5)
    slower = mint(players[1], increment=70_000, action_type="LAP_TIME")  # slower: ignored
    services.score_submit(user=players[1], action_token=slower)
    rows = selectors.board_page(spec=spec, period=spec.period_at(clock.now), limit=10).rows
    assert [(r.username, r.score, r.rank) for r in rows] == [
        ("laps-0", 57_900, 1),
        ("laps-1", 58_500, 2),
        ("laps-2", 60_100, 3),
    ]


@pytest.mark.embedded
@pytest.mark.django_db
def test_lookup_ranks_friends_within_the_set(mint, unthrottled, clock):
    spec, players = _board_with_scores("friends", [500, 400, 300, 200, 100], clock, mint)
    friends = [str(players[3].pk), str(players[1].pk), "00000000-0000-4000-8000-000000000000"]
    rows, not_found = selectors.board_lookup(spec=spec, period=spec.period_at(clock.now), user_ids=friends)
    assert [(r.standing.user_id, r.standing.rank, r.rank_in_set) for r in rows] == [
        (str(players[1].pk), 2, 1),
        (str(players[3].pk), 4, 2),
    ]
    assert not_found == ["00000000-0000-4000-8000-000000000000"]


@pytest.mark.embedded
@pytest.mark.django_db
def test_a_quarantined_player_is_hidden_from_others_but_not_from_themselves(
    mint, unthrottled, clock, django_capture_on_commit_callbacks
):
    spec, players = _board_with_scores("shadow", [300, 200, 100], clock, mint)
    cheater = players[0]
    with django_capture_on_commit_callbacks(execute=True):
        User.objects.filter(pk=cheater.pk).update(is_quarantined=True)
        services.player_standing_changed(user_id=str(cheater.pk))
    period = spec.period_at(clock.now)
    rows = selectors.board_page(spec=spec, period=period, limit=10).rows
    assert [(r.username, r.rank) for r in rows] == [("shadow-1", 1), ("shadow-2", 2)]  # ranks close the gap
    with pytest.raises(Exception) as hidden:
        selectors.player_standing(spec=spec, period=period, user_id=str(cheater.pk))
    assert getattr(hidden.value, "status_code", None) == 404
    mine = selectors.player_standing(spec=spec, period=period, user_id=str(cheater.pk), viewer_id=str(cheater.pk))
    assert (mine.rank, mine.score) == (1, 300)


# ---------------------------------------------------------------------------------------------
# Cursor paging under concurrent writes
# ---------------------------------------------------------------------------------------------
@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_cursor_paging_over_1000_players_while_scores_change(mint):
    make_board("big")
    spec = spec_of("big")
    now = timezone.now()
    period = spec.period_at(now)
    players = PlayerFactory.create_batch(1000)
    BoardEntry.objects.bulk_create(
        BoardEntry(
            board_id="big",
            period_key=period.key,
            user=p,
            score=(i * 37) % 500,  # many ties
            sort_value=-((i * 37) % 500),
            reached_at=now - dt.timedelta(seconds=i % 7),
            version=1,
            updated_at=now,
        )
        for i, p in enumerate(players)
    )
    services.index_rebuild(spec=spec, period_key=period.key)
    movers = players[::10]  # 100 players whose scores change while the pages are read
    stop = threading.Event()

    def write() -> None:
        try:
            with override_settings(**UNTHROTTLED):
                i = 0
                while not stop.is_set() and i < 400:
                    user = movers[i % len(movers)]
                    services.score_submit(user=user, action_token=mint(user, increment=1 + i % 50))
                    i += 1
        finally:
            connections.close_all()

    writer = threading.Thread(target=write)
    writer.start()
    pages: list[list[str]] = []
    try:
        cursor = None
        while True:
            page = selectors.board_page(spec=spec, period=period, limit=37, cursor=cursor)
            pages.append([r.user_id for r in page.rows])
            cursor = page.next_cursor
            if cursor is None:
                break
    finally:
        stop.set()
        writer.join()

    seen = [uid for page in pages for uid in page]
    steady = {str(p.pk) for p in players} - {str(p.pk) for p in movers}
    counts = {uid: seen.count(uid) for uid in steady}
    assert set(counts.values()) == {1}  # every player whose score did not change: exactly once
    for a, b in itertools.pairwise(pages):
        assert not set(a) & set(b)  # nobody twice on consecutive pages


@pytest.mark.embedded
@pytest.mark.django_db
def test_a_cursor_of_another_period_or_board_is_refused(mint, unthrottled, clock):
    spec, _ = _board_with_scores("paged", [5, 4, 3], clock, mint, period="daily")
    period = spec.period_at(clock.now)
    page = selectors.board_page(spec=spec, period=period, limit=2)
    assert page.next_cursor is not None
    with pytest.raises(Exception) as wrong:
        selectors.board_page(spec=spec, period=spec.period_before(period), limit=2, cursor=page.next_cursor)
    assert getattr(wrong.value, "code", None) == "invalid_cursor"
    with pytest.raises(Exception) as forged:
        selectors.board_page(spec=spec, period=period, limit=2, cursor=page.next_cursor[:-3] + "abc")
    assert getattr(forged.value, "code", None) == "invalid_cursor"
    rest = selectors.board_page(spec=spec, period=period, limit=2, cursor=page.next_cursor)
    assert [r.rank for r in rest.rows] == [3] and rest.next_cursor is None


# ---------------------------------------------------------------------------------------------
# Moderation across boards and closed periods
# ---------------------------------------------------------------------------------------------
@pytest.mark.embedded
@pytest.mark.django_db
def test_reversing_an_action_corrects_every_board_including_a_closed_archive(make_player, mint, unthrottled, clock):
    make_board("daily", period="daily")
    make_board("best-run", operator="best")
    spec = spec_of("daily")
    honest, cheater = make_player(username="honest"), make_player(username="cheater")
    services.score_submit(user=honest, action_token=mint(honest, increment=400))
    clock.now += dt.timedelta(seconds=10)
    services.score_submit(user=cheater, action_token=mint(cheater, increment=300))
    clock.now += dt.timedelta(seconds=10)
    services.score_submit(user=cheater, action_token=mint(cheater, increment=900))
    bad = ScoreHistory.objects.filter(user=cheater).order_by("-created_at").first()
    assert bad is not None
    yesterday = spec.period_at(clock.now)
    clock.now = yesterday.ends_at + dt.timedelta(minutes=1)
    board_services.board_periods_maintain(now=clock.now)
    assert selectors.board_page(spec=spec, period=yesterday, limit=5).rows[0].username == "cheater"

    reversal = services.score_reverse(history=bad, reason="bot")

    assert {(b["board"], b["old"], b["new"]) for b in reversal.boards} == {
        ("global", 1200, 300),
        ("daily", 1200, 300),
        ("best-run", 900, 300),
    }
    cheater.refresh_from_db()
    assert cheater.current_score == 300
    archive = selectors.board_page(spec=spec, period=yesterday, limit=5).rows
    assert [(r.username, r.score, r.rank) for r in archive] == [("honest", 400, 1), ("cheater", 300, 2)]
    status = BoardPeriod.objects.get(board_id="daily", key=yesterday.key)
    assert status.corrected_at is not None
    assert selectors.period_payload(spec=spec, period=yesterday)["corrected"] is True
    assert services.score_reverse(history=bad, reason="again") == reversal  # idempotent


@pytest.mark.embedded
@pytest.mark.django_db
def test_confirming_a_fraud_log_reverses_the_action_on_every_board_and_its_closed_archive(
    make_player, mint, unthrottled, clock, django_capture_on_commit_callbacks
):
    from decimal import Decimal

    from fraud import services as fraud_services
    from fraud.models import FraudLog

    make_board("daily", period="daily")
    spec = spec_of("daily")
    honest, cheater = make_player(username="honest"), make_player(username="cheater")
    moderator = make_player(username="mod", is_staff=True)
    services.score_submit(user=honest, action_token=mint(honest, increment=400))
    clock.now += dt.timedelta(seconds=30)
    services.score_submit(user=cheater, action_token=mint(cheater, increment=1000))
    bad = ScoreHistory.objects.get(user=cheater)
    log = FraudLog.objects.create(
        user=cheater, event_type="velocity", risk_score=Decimal("0.60"), score_history=bad, rules=",velocity,"
    )
    yesterday = spec.period_at(clock.now)
    clock.now = yesterday.ends_at + dt.timedelta(minutes=1)  # the day closed with the cheater on top
    board_services.board_periods_maintain(now=clock.now)
    assert selectors.board_page(spec=spec, period=yesterday, limit=5).rows[0].username == "cheater"

    with django_capture_on_commit_callbacks(execute=True):
        action = fraud_services.fraud_log_confirm(fraud_log=log, moderator=moderator, reason="a bot")

    assert action.details["points_removed"] == 1000
    cheater.refresh_from_db()
    assert (cheater.is_active, cheater.current_score) == (False, 0)
    archive = selectors.board_page(spec=spec, period=yesterday, limit=5)
    assert [r.username for r in archive.rows] == ["honest"]  # banned and reversed: off the archive too
    assert selectors.period_payload(spec=spec, period=yesterday)["corrected"] is True
    live = selectors.leaderboard_top(limit=5)
    assert [r.username for r in live.rows] == ["honest"]
