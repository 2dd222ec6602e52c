"""The player card (accounts/cards.py): a warm score update makes one PostgreSQL round trip, and no
card, however stale, lets a disabled, deleted or signed-out player write.

Real PostgreSQL and Redis. A "stale card" is written straight into Redis, as the race it stands for
would leave it (a lookup that read the row before a ban committed, then filled the card after the
ban dropped it): the write's own checks on the row it locks must refuse.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
import redis as redis_lib
from django.db import connection, connections
from django.test import override_settings
from django.utils import timezone

from accounts import cards, oidc, selectors
from accounts import services as account_services
from accounts.models import User
from fraud import services as fraud_services
from scores import action_tokens
from scores import services as score_services
from scores.models import ScoreHistory, UsedNonce
from tests.conftest import access_token_for, submit
from tests.oidc_issuer import LocalIssuer
from tests.scores.conftest import UNTHROTTLED

pytestmark = pytest.mark.usefixtures("unthrottled")


@pytest.fixture
def statements(monkeypatch: pytest.MonkeyPatch) -> Callable[[], list[str]]:
    """``record()`` starts recording every statement this process sends to PostgreSQL (Django's
    cursors and the prepared statements of scoreboard/db.py alike) and returns the list it fills."""

    def record() -> list[str]:
        sent: list[str] = []
        execute = psycopg.Cursor.execute

        def counted(cursor: Any, query: Any, *args: Any, **kwargs: Any) -> Any:
            sent.append(str(query)[:80])
            return execute(cursor, query, *args, **kwargs)

        monkeypatch.setattr(psycopg.Cursor, "execute", counted)
        return sent

    return record


@contextlib.contextmanager
def redis_dead() -> Iterator[None]:
    """Redis at an address nothing listens on (and as the cache), with the process's clients, indexes
    and circuit breakers forgotten before and after."""
    from scoreboard import redis as scoreboard_redis
    from scores import ranking
    from tests.conftest import caches_on
    from tests.scores.test_redis_outage import DEAD_REDIS_URL

    scoreboard_redis._client.cache_clear()
    ranking._index.cache_clear()
    try:
        with override_settings(REDIS_URL=DEAD_REDIS_URL, CACHES=caches_on(DEAD_REDIS_URL)):
            yield
    finally:
        scoreboard_redis._client.cache_clear()
        ranking._index.cache_clear()
        scoreboard_redis.reset_breakers()


def card_of(redis_client: redis_lib.Redis, user: User) -> dict[bytes, bytes]:
    return redis_client.hgetall(cards.card_key(str(user.pk)))  # type: ignore[return-value]


def stale_card(redis_client: redis_lib.Redis, user: User, *, epoch: int = 0) -> None:
    """An active card of ``epoch``, whatever the row says now."""
    redis_client.hset(
        cards.card_key(str(user.pk)),
        mapping={"a": "1", "e": str(epoch), "j": repr(user.date_joined.timestamp()), "s": "0", "v": "0", "q": "0"},
    )


def nothing_written(user: User, score: int) -> None:
    user.refresh_from_db()
    assert user.current_score == score
    assert ScoreHistory.objects.filter(user=user).count() == (1 if score else 0)


@pytest.fixture
def warm(make_player: Callable[..., User], client_for: Any, mint: Any) -> Iterator[tuple[User, Any]]:
    """A player with one applied update (10 points): their card is in Redis."""
    player = make_player()
    client = client_for(player)
    assert submit(client, mint(player, increment=10)).status_code == 200
    yield player, client


@pytest.mark.django_db(transaction=True)  # autocommit, as in production: no test savepoints around the write
@override_settings(**UNTHROTTLED)
def test_a_warm_update_makes_one_postgresql_and_two_redis_round_trips(
    make_player: Callable[..., User],
    client_for: Any,
    mint: Any,
    statements: Callable[[], list[str]],
    redis_commands: Callable[[], list[bytes]],
    redis_client: redis_lib.Redis,
    three_boards: None,
) -> None:
    player = make_player()
    client = client_for(player)
    redis_client.delete(cards.card_key(str(player.pk)))  # an hour since the sign-in: the card expired
    with override_settings(RATE_LIMIT_ENABLED=True):
        cold_sql = statements()
        assert submit(client, mint(player, increment=5)).status_code == 200
        cold = list(cold_sql)
        assert card_of(redis_client, player)[b"s"] == b"5"  # filled by the lookup, refreshed by the write
        sql, sent = statements(), redis_commands()
        response = submit(client, mint(player, increment=7))
    assert response.status_code == 200, response.content
    assert [b["board"] for b in response.json()["data"]["boards"]] == ["global", "day", "week"]
    assert response.json()["data"]["new_score"] == 12
    assert sql == [score_services.SUBMIT_SQL[:80]], sql  # the write, nothing else
    assert len(sent) == 2, sent
    assert any("FROM users" in s for s in cold) and len(cold) > len(sql)  # the cold card: the lookup ran
    card = card_of(redis_client, player)
    assert (card[b"a"], card[b"e"], card[b"s"], card[b"q"]) == (b"1", b"0", b"12", b"0")


@pytest.mark.django_db(transaction=True)
@override_settings(**UNTHROTTLED)
def test_a_session_begins_with_a_card_and_its_first_update_is_warm(
    make_player: Callable[..., User],
    client_for: Any,
    api_client: Any,
    mint: Any,
    statements: Callable[[], list[str]],
    redis_commands: Callable[[], list[bytes]],
    redis_client: redis_lib.Redis,
) -> None:
    other = make_player()  # the process's first update loads the boards and their periods
    assert submit(client_for(other), mint(other, increment=1)).status_code == 200
    player = make_player(current_score=40, score_version=3, token_epoch=2)
    player.set_password("a long enough password")
    player.save()
    assert card_of(redis_client, player) == {}  # the save dropped any card
    login = api_client.post(
        "/v1/auth/login", {"username": player.username, "password": "a long enough password"}, format="json"
    )
    assert login.status_code == 200, login.content
    card = card_of(redis_client, player)
    player.refresh_from_db()  # the password change moved the token epoch on
    assert (card[b"a"], card[b"s"], card[b"v"], card[b"q"]) == (b"1", b"40", b"3", b"0")
    assert card[b"e"] == str(player.token_epoch).encode()
    assert float(card[b"j"]) == player.date_joined.timestamp()
    assert 0 < redis_client.ttl(cards.card_key(str(player.pk))) <= cards.CARD_TTL_SECONDS
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {login.json()['data']['access']}")
    sql, sent = statements(), redis_commands()
    response = submit(api_client, mint(player, increment=7))
    assert response.status_code == 200, response.content
    assert response.json()["data"]["old_score"] == 40
    assert sql == [score_services.SUBMIT_SQL[:80]], sql  # no lookup: the card from the sign-in vouched
    assert len(sent) == 2, sent


@pytest.mark.django_db(transaction=True)
def test_a_card_offer_never_overwrites_a_newer_card(
    make_player: Callable[..., User], redis_client: redis_lib.Redis
) -> None:
    player = make_player()
    stale_row = User.objects.get(pk=player.pk)
    User.objects.filter(pk=player.pk).update(current_score=12, score_version=2)
    stale_card(redis_client, player)
    redis_client.hset(cards.card_key(str(player.pk)), mapping={"s": "12", "v": "2"})
    account_services.player_tokens_issue(user=stale_row)  # read before the update wrote 12
    assert (card_of(redis_client, player)[b"s"], card_of(redis_client, player)[b"v"]) == (b"12", b"2")


@pytest.mark.django_db(transaction=True)
def test_no_card_for_an_inactive_player_or_a_rolled_back_sign_in(
    make_player: Callable[..., User], redis_client: redis_lib.Redis
) -> None:
    from django.db import transaction

    inactive, rolled_back = make_player(is_active=False), make_player()
    cards.card_offer(inactive)

    class Rollback(Exception):
        pass

    with pytest.raises(Rollback), transaction.atomic():
        account_services.player_tokens_issue(user=rolled_back)
        raise Rollback
    assert card_of(redis_client, inactive) == {}
    assert card_of(redis_client, rolled_back) == {}


@pytest.mark.django_db(transaction=True)
@override_settings(**UNTHROTTLED)
def test_a_ban_that_overtakes_a_card_offer_still_refuses_the_write(
    make_player: Callable[..., User], client_for: Any, mint: Any, redis_client: redis_lib.Redis
) -> None:
    """The sign-in read the row, a ban committed (dropping the card), then the offer landed: the card
    says active, the write's own check says 403 and drops the card."""
    player = make_player()
    read_at_sign_in = User.objects.get(pk=player.pk)
    client = client_for(player)
    User.objects.filter(pk=player.pk).update(is_active=False)
    assert card_of(redis_client, player) == {}
    cards.card_offer(read_at_sign_in)
    assert card_of(redis_client, player)[b"a"] == b"1"
    response = submit(client, mint(player, increment=5))
    assert (response.status_code, response.json()["error"]["code"]) == (403, "account_disabled")
    assert card_of(redis_client, player) == {}
    nothing_written(player, 0)


def test_a_sign_in_with_redis_down_still_answers(
    make_player: Callable[..., User], api_client: Any, django_capture_on_commit_callbacks: Any
) -> None:
    player = make_player()
    player.set_password("a long enough password")
    player.save()
    with redis_dead(), pytest.MonkeyPatch.context() as patch:
        patch.setattr(cards, "cards_usable", lambda: True)  # as if the circuit had not opened yet
        with django_capture_on_commit_callbacks(execute=True):
            login = api_client.post(
                "/v1/auth/login", {"username": player.username, "password": "a long enough password"}, format="json"
            )
    assert login.status_code == 200, login.content
    assert login.json()["data"]["access"]


@pytest.mark.parametrize(
    "ban",
    [
        pytest.param(lambda p: User.objects.filter(pk=p.pk).update(is_active=False), id="queryset-update"),
        pytest.param(lambda p: ban_by_moderator(p), id="moderator-ban"),
    ],
)
def test_a_banned_player_with_a_stale_card_cannot_write(
    warm: tuple[User, Any], mint: Any, redis_client: redis_lib.Redis, ban: Callable[[User], Any]
) -> None:
    player, client = warm
    token = mint(player, increment=50)
    ban(player)
    assert card_of(redis_client, player) == {}  # every change of the row drops the card
    player.refresh_from_db()
    stale_card(redis_client, player)  # ...and the race that refills it
    response = submit(client, token)
    assert response.status_code in (401, 403), response.content
    # The moderator's ban also signs the player out: the old token is a revoked session then.
    assert response.json()["error"]["code"] in ("account_disabled", "session_revoked")
    nothing_written(player, 10)
    assert not UsedNonce.objects.filter(action_id=action_tokens.verify(token).action_id).exists()
    assert card_of(redis_client, player) == {}  # the refused write dropped it


def ban_by_moderator(player: User) -> None:
    moderator = User.objects.create(username=f"mod-{player.pk.hex[:8]}", email=f"m{player.pk.hex[:8]}@x.test")
    fraud_services.player_standing_set(user_id=str(player.pk), active=False, moderator=moderator, reason="test")


def test_a_disabled_player_gets_403_not_the_later_checks(
    warm: tuple[User, Any], mint: Any, redis_client: redis_lib.Redis
) -> None:
    """DESIGN's order: a disabled player is 403 before the body (400) or the action token (401) is
    looked at, whether a card is there or not."""
    player, client = warm
    User.objects.filter(pk=player.pk).update(is_active=False)
    player.refresh_from_db()
    stale_card(redis_client, player)  # the last one then gets as far as the write, which refuses
    for response in (
        client.post("/v1/scores/update", {"unknown": 1}, format="json"),
        submit(client, "not-a-token"),
        submit(client, mint(player, increment=5, now=time.time() - 3600)),
        submit(client, mint(player, increment=5)),
    ):
        assert response.status_code == 403, response.content
        assert response.json()["error"]["code"] == "account_disabled"
    nothing_written(player, 10)


def test_a_revoked_session_with_a_stale_card_cannot_write(
    warm: tuple[User, Any], mint: Any, redis_client: redis_lib.Redis
) -> None:
    player, client = warm
    account_services.player_sessions_revoke(user_id=str(player.pk), reason="test")
    assert card_of(redis_client, player) == {}
    stale_card(redis_client, player, epoch=0)  # the old epoch, the one the old token carries
    response = submit(client, mint(player, increment=50))
    assert response.status_code == 401, response.content
    assert response.json()["error"]["code"] == "session_revoked"
    nothing_written(player, 10)
    # A new login works at once (a card of the new epoch is filled from the lookup).
    fresh = client_with(access_token_for(player))
    assert submit(fresh, mint(player, increment=5)).status_code == 200
    assert card_of(redis_client, player)[b"e"] == b"1"


def client_with(access: str) -> Any:
    from rest_framework.test import APIClient

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {access}")
    return client


def test_a_deleted_player_with_a_stale_card_cannot_write(
    make_player: Callable[..., User], client_for: Any, mint: Any, redis_client: redis_lib.Redis
) -> None:
    player = make_player()
    client = client_for(player)
    token = mint(player, increment=50)
    stale_card(redis_client, player)
    User.objects.filter(pk=player.pk).delete()
    assert card_of(redis_client, player) == {}  # post_delete dropped it
    without_card = submit(client, token)
    stale_card(redis_client, player)
    response = submit(client, token)
    assert response.status_code == 401, response.content
    assert response.json()["error"] == without_card.json()["error"]  # what the lookup always answered
    assert not ScoreHistory.objects.filter(user_id=player.pk).exists()


@pytest.mark.parametrize("change", ["epoch", "ban"])
def test_a_change_between_the_card_check_and_the_write_is_refused(
    warm: tuple[User, Any], mint: Any, redis_client: redis_lib.Redis, monkeypatch: pytest.MonkeyPatch, change: str
) -> None:
    """The card vouched (a hit in the pre-write call), then the epoch is raised or the player banned
    before the write runs: the write, which checks the row it locks, refuses."""
    player, client = warm
    ensure = score_services._periods_ensure

    def meanwhile(writes: Any) -> None:  # runs right before the write statement
        with connection.cursor() as cursor:  # raw SQL: no signal, the card stays as it was
            column = "token_epoch = token_epoch + 1" if change == "epoch" else "is_active = false"
            cursor.execute(f"UPDATE users SET {column} WHERE id = %s", [player.pk])
        ensure(writes)

    monkeypatch.setattr(score_services, "_periods_ensure", meanwhile)
    assert card_of(redis_client, player)[b"a"] == b"1"
    response = submit(client, mint(player, increment=50))
    expected = (401, "session_revoked") if change == "epoch" else (403, "account_disabled")
    assert (response.status_code, response.json()["error"]["code"]) == expected, response.content
    nothing_written(player, 10)
    assert card_of(redis_client, player) == {}


def password_change(player: User) -> None:
    player.set_password("an-other-Passw0rd!x")
    player.save()


def test_every_change_of_the_row_drops_the_card(
    warm: tuple[User, Any], redis_client: redis_lib.Redis, make_player: Callable[..., User]
) -> None:
    player, _ = warm
    changes: list[Callable[[], Any]] = [
        lambda: player.save(),  # the admin's change form
        lambda: password_change(player),
        lambda: fraud_services.player_quarantine(user_id=str(player.pk)),
        lambda: User.objects.filter(pk=player.pk).update(first_name="x"),
        lambda: User.objects.filter(pk__in=[player.pk]).bulk_update([player], ["last_name"]),
        lambda: score_services.score_reverse(
            history=ScoreHistory.objects.filter(user=player).first(),  # type: ignore[arg-type]
            reason="test",
        ),
    ]
    for change in changes:
        player.refresh_from_db()
        stale_card(redis_client, player, epoch=player.token_epoch)
        change()
        assert card_of(redis_client, player) == {}, change


def test_a_quarantine_after_the_card_still_hides_the_update(
    warm: tuple[User, Any], mint: Any, redis_client: redis_lib.Redis, api_client: Any
) -> None:
    """``hidden`` comes from the row the write locked, not from the card or a read before it."""
    player, client = warm
    with connection.cursor() as cursor:
        cursor.execute("UPDATE users SET is_quarantined = true WHERE id = %s", [player.pk])
    assert card_of(redis_client, player)[b"q"] == b"0"  # stale: raw SQL sends no signal
    assert submit(client, mint(player, increment=50)).status_code == 200
    board = api_client.get("/v1/leaderboard").json()["data"]
    assert str(player.pk) not in [row["user_id"] for row in board["leaderboard"]]
    assert card_of(redis_client, player)[b"q"] == b"1"


@pytest.mark.django_db(transaction=True)
@override_settings(**UNTHROTTLED)
@pytest.mark.parametrize("how", ["moderator", "disable-only"])
def test_a_ban_while_updates_run_stops_every_later_write(
    make_player: Callable[..., User], mint: Any, redis_client: redis_lib.Redis, how: str
) -> None:
    """Four threads submit as fast as they can with a warm card; the player is banned (by a
    moderator: disabled and signed out; or only disabled, sessions kept). Every update answered 200
    is in the history, none was applied after the ban committed, and every update sent after the
    ban is refused."""
    player = make_player()
    access = access_token_for(player)
    assert submit(client_with(access), mint(player, increment=1)).status_code == 200
    banned_at: list[float] = []
    results: list[tuple[float, int]] = []  # (sent at, status)
    lock = threading.Lock()
    stop = threading.Event()

    def run() -> None:
        client = client_with(access)
        try:
            while not stop.is_set():
                sent = time.monotonic()
                status = submit(client, mint(player, increment=1)).status_code
                with lock:
                    results.append((sent, status))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    if how == "moderator":
        ban_by_moderator(player)  # commits and drops the card
    else:
        with connection.cursor() as cursor:  # no signal: the card stays, only the write's check is left
            cursor.execute("UPDATE users SET is_active = false WHERE id = %s", [player.pk])
    banned_at.append(time.monotonic())
    ban_committed = timezone.now()
    time.sleep(1.0)
    stop.set()
    for t in threads:
        t.join(timeout=30)
    applied = [s for _, s in results if s == 200]
    after = [s for sent, s in results if sent > banned_at[0]]
    assert len(applied) > 5, results  # the updates really ran concurrently with a warm card
    assert after and all(s in (401, 403) for s in after), after
    player.refresh_from_db()
    history = ScoreHistory.objects.filter(user=player, kind=ScoreHistory.Kind.ACTION)
    assert history.count() == 1 + len(applied)
    assert not history.filter(created_at__gt=ban_committed).exists()
    assert player.current_score == 1 + len(applied)
    assert set(results) - {r for r in results if r[1] in (200, 401, 403)} == set()


@pytest.fixture
def idp(settings: Any) -> Iterator[LocalIssuer]:
    issuer = LocalIssuer().start()
    settings.OIDC_ISSUERS = [issuer.config()]
    oidc.jwks_cache.clear()
    yield issuer
    issuer.stop()
    oidc.jwks_cache.clear()


def test_an_external_session_revoked_before_the_write_is_refused(
    db: None, idp: LocalIssuer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An external issuer's token names no epoch: the write checks its ``iat`` against
    ``sessions_revoked_at`` on the row it locks (a revocation after the lookup, before the write)."""
    ensure = score_services._periods_ensure
    for iat in (int(time.time()) - 5, None):
        access = idp.token(f"roamer-{iat}", iat=iat)
        client = client_with(access)
        user_id = client.get("/v1/auth/me").json()["data"]["user_id"]
        player = User.objects.get(pk=user_id)

        def meanwhile(writes: Any, player: User = player, ensure: Any = ensure) -> None:
            with connection.cursor() as cursor:
                cursor.execute("UPDATE users SET sessions_revoked_at = now() WHERE id = %s", [player.pk])
            ensure(writes)

        monkeypatch.setattr(score_services, "_periods_ensure", meanwhile)
        token = action_tokens.mint(user_id=user_id, action_type="LEVEL_COMPLETION", score_increment=5)
        response = submit(client, token.action_token)
        assert response.status_code == 401, response.content
        assert response.json()["error"]["code"] == "session_revoked"
        nothing_written(player, 0)
        monkeypatch.setattr(score_services, "_periods_ensure", ensure)


def test_with_redis_down_the_player_is_looked_up_as_before(
    make_player: Callable[..., User], client_for: Any, mint: Any, statements: Callable[[], list[str]]
) -> None:
    """No card without Redis: once the circuit is open, authentication looks the player up at once
    (a disabled player is 403 there), and the update commits on PostgreSQL."""
    player, banned = make_player(), make_player()
    clients = client_for(player), client_for(banned)
    User.objects.filter(pk=banned.pk).update(is_active=False)
    with redis_dead():
        assert submit(clients[0], mint(player, increment=5)).status_code == 200  # opens the circuit
        sql = statements()
        response = submit(clients[0], mint(player, increment=7))
        refused = submit(clients[1], mint(banned, increment=7))
    assert response.status_code == 200, response.content
    assert response.json()["data"]["new_score"] == 12
    assert sql[0] == selectors._BY_ID_SQL[:80], sql  # the lookup, first (authentication's)
    assert (refused.status_code, refused.json()["error"]["code"]) == (403, "account_disabled")


@pytest.mark.django_db(transaction=True)
def test_a_partial_row_gets_no_card_and_costs_no_query(
    make_player: Callable[..., User], redis_client: redis_lib.Redis, statements: Callable[[], list[str]]
) -> None:
    player = make_player()
    partial = User.objects.only("id", "username", "token_epoch").get(pk=player.pk)
    sql = statements()
    cards.card_offer(partial)
    assert sql == []
    assert card_of(redis_client, player) == {}
    cards.card_offer(User.objects.get(pk=player.pk))
    assert card_of(redis_client, player)[b"a"] == b"1"
