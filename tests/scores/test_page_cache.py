"""Board pages are kept per (board, period, page) with the index version they were read at.

A read while the index is unchanged is answered from the copy (one round trip that only compares
versions); every change of the index, from any process (the version lives in Redis), a rebuild or a
lost index makes the next read go back to the index or to PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import redis as redis_lib
from django.conf import settings
from django.test import override_settings
from rest_framework.test import APIClient

from accounts.models import User
from scores import ranking, registry, selectors, services
from scores.boards import GLOBAL_ID
from scores.models import BoardEntry
from tests.conftest import redis_flush_test_database, submit
from tests.fraud.conftest import NO_FRAUD_BLOCKING, NO_RATE_LIMITS

pytestmark = [pytest.mark.django_db, pytest.mark.redis]


def top(client: APIClient, **params: Any) -> list[tuple[str, int]]:
    response = client.get("/v1/leaderboard", params)
    assert response.status_code == 200, response.content
    return [(row["username"], row["score"]) for row in response.json()["data"]["leaderboard"]]


def entries(client: APIClient) -> list[tuple[str, int]]:
    response = client.get(f"/v1/boards/{GLOBAL_ID}/entries", {"limit": 5})
    assert response.status_code == 200, response.content
    return [(row["username"], row["score"]) for row in response.json()["data"]["entries"]]


@pytest.fixture
def scored(make_player: Callable[..., User], client_for: Any, mint: Any) -> Callable[[User, int], None]:
    def score(player: User, increment: int) -> None:
        with override_settings(**NO_FRAUD_BLOCKING, **NO_RATE_LIMITS):
            assert submit(client_for(player), mint(player, increment=increment)).status_code == 200

    return score


@pytest.fixture
def no_ranking(monkeypatch: pytest.MonkeyPatch) -> Callable[[], None]:
    """Calling it makes any page actually read from the index fail (only a kept copy can answer)."""

    def arm() -> None:
        def refuse(*args: Any, **kwargs: Any) -> Any:
            raise AssertionError("the page was decoded again although the index did not change")

        monkeypatch.setattr(ranking, "rank_numbers", refuse)

    return arm


def test_an_unchanged_board_is_served_from_the_copy_and_a_change_is_seen_at_once(
    make_player: Callable[..., User], scored: Any, no_ranking: Callable[[], None], monkeypatch: pytest.MonkeyPatch
) -> None:
    ann, bob = make_player(username="ann"), make_player(username="bob")
    scored(ann, 30)
    client = APIClient()
    assert top(client) == [("ann", 30)]
    assert entries(client) == [("ann", 30)]
    no_ranking()
    assert top(client) == [("ann", 30)]  # from the copy: nothing decoded or ranked again
    assert entries(client) == [("ann", 30)]
    monkeypatch.undo()
    scored(bob, 50)
    assert top(client) == [("bob", 50), ("ann", 30)]
    assert entries(client) == [("bob", 50), ("ann", 30)]
    assert top(client, limit=1) == [("bob", 50)]  # another page size is another copy


def test_a_change_written_by_another_process_is_seen(make_player: Callable[..., User], scored: Any) -> None:
    """Another process's write reaches this one through the index version in Redis: here the
    index is changed through a separate Redis client, as another server would."""
    ann = make_player(username="ann")
    scored(ann, 30)
    client = APIClient()
    assert top(client) == [("ann", 30)]
    spec = registry.board_get(GLOBAL_ID)
    assert spec is not None
    entry = BoardEntry.objects.select_related("user").get(board_id=GLOBAL_ID, user=ann)
    indexed = selectors.index_entry(entry)
    other_process = ranking.RedisIndex(redis_lib.Redis.from_url(settings.REDIS_URL), spec, entry.period_key)
    other_process.apply(
        ranking.IndexEntry(
            user_id=indexed.user_id,
            username="ann-renamed",
            score=99,
            version=indexed.version + 1,
            reached_at=indexed.reached_at,
            last_updated=indexed.last_updated,
        )
    )
    assert top(client) == [("ann-renamed", 99)]


def test_a_quarantine_takes_the_player_off_every_kept_page(
    make_player: Callable[..., User], scored: Any, django_capture_on_commit_callbacks: Any
) -> None:
    ann, bob = make_player(username="ann"), make_player(username="bob")
    scored(ann, 30)
    scored(bob, 50)
    client = APIClient()
    assert top(client) == [("bob", 50), ("ann", 30)]
    with django_capture_on_commit_callbacks(execute=True):
        User.objects.filter(pk=bob.pk).update(is_quarantined=True)
        services.player_standing_changed(user_id=str(bob.pk))
    assert top(client) == [("ann", 30)]


def test_a_rebuild_and_a_lost_index_are_never_answered_from_an_old_copy(
    make_player: Callable[..., User], scored: Any
) -> None:
    ann = make_player(username="ann")
    scored(ann, 30)
    client = APIClient()
    assert top(client) == [("ann", 30)]
    # PostgreSQL changed behind the index (a repair): the rebuild gives the index a new version.
    BoardEntry.objects.filter(board_id=GLOBAL_ID, user=ann).update(score=40, version=99)
    assert services.leaderboard_rebuild() == 1
    assert top(client) == [("ann", 40)]
    # Redis lost everything: the page comes from PostgreSQL, not from the copy.
    BoardEntry.objects.filter(board_id=GLOBAL_ID, user=ann).update(score=45, version=100)
    redis_flush_test_database()
    assert top(client) == [("ann", 45)]


@pytest.mark.parametrize(
    ("read", "path"),
    [(top, "/v1/leaderboard"), (entries, f"/v1/boards/{GLOBAL_ID}/entries")],
    ids=["leaderboard", "entries"],
)
def test_a_board_read_is_one_redis_round_trip_with_its_ip_limit_in_it(
    read: Callable[[APIClient], list[tuple[str, int]]],
    path: str,
    make_player: Callable[..., User],
    scored: Any,
    redis_commands: Callable[[], list[bytes]],
) -> None:
    ann = make_player(username="ann")
    scored(ann, 30)
    client = APIClient()
    with override_settings(RATE_LIMIT_ENABLED=True, RATE_LIMIT_IP_PER_MINUTE=3):
        assert read(client) == [("ann", 30)]  # warm: scripts loaded
        sent = redis_commands()
        assert read(client) == [("ann", 30)]
        assert len(sent) == 1, sent
        assert read(client) == [("ann", 30)]
        refused = client.get(path)  # the 4th read of this address in the window
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "ip_rate_limited"
    assert 1 <= int(refused["Retry-After"]) <= 60


def test_a_kept_page_is_answered_with_the_bytes_it_was_first_answered_with(
    make_player: Callable[..., User], scored: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unchanged board is encoded once per process: later reads send the kept bytes, which are
    DRF's rendering of the same answer; a change encodes the new page."""
    from rest_framework.renderers import JSONRenderer

    from scores import apis

    ann, bob = make_player(username="ann"), make_player(username="bob")
    scored(ann, 30)
    client = APIClient()
    encoded: list[dict[str, Any]] = []
    real_ok_body = apis.ok_body

    def counting_ok_body(data: dict[str, Any]) -> bytes:
        encoded.append(data)
        return real_ok_body(data)

    monkeypatch.setattr(apis, "ok_body", counting_ok_body)
    first = client.get("/v1/leaderboard")
    again = client.get("/v1/leaderboard")
    assert first.status_code == again.status_code == 200
    assert first["Content-Type"] == "application/json"
    assert again.content == first.content
    assert first.content == JSONRenderer().render({"success": True, "data": encoded[0]})
    assert len(encoded) == 1
    scored(bob, 50)
    changed = client.get("/v1/leaderboard")
    assert [row["username"] for row in changed.json()["data"]["leaderboard"]] == ["bob", "ann"]
    assert len(encoded) == 2
    assert client.get("/v1/leaderboard", {"limit": 1}).json()["data"]["leaderboard"][0]["username"] == "bob"
    assert len(encoded) == 3  # another page size is another copy, encoded once too
