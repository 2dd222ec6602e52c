"""clients/python (installed with pip by make dev) against a real server started by the test."""

from __future__ import annotations

import importlib.metadata
import json
import re
from collections.abc import Iterator

import pytest
from django.conf import settings
from scoreboard_client import (
    ActionTokenReplayed,
    BadRequest,
    Forbidden,
    Leaderboard,
    NotFound,
    Scoreboard,
    ScoreUpdate,
    TransportError,
    Unauthorized,
    mint_action_token,
)

from accounts import services as account_services
from scoreboard.version import __version__
from tests.oidc_issuer import LocalIssuer
from tests.realtime.servers import Server, asgi_servers

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module")
def idp() -> Iterator[LocalIssuer]:
    issuer = LocalIssuer(audience="studio-game").start()
    yield issuer
    issuer.stop()


@pytest.fixture(scope="module")
def server(django_db_setup: None, tmp_path_factory: pytest.TempPathFactory, idp: LocalIssuer) -> Iterator[Server]:
    """One server for the module (it sees what each test commits; the database is emptied between tests)."""
    env = {"OIDC_ISSUERS": json.dumps([idp.config()])}
    with asgi_servers(1, tmp_path_factory.mktemp("kit"), extra_env=env) as servers:
        yield servers[0]


@pytest.fixture
def api_key() -> str:
    return account_services.game_server_key_create(name="kit-test")[1]


def test_the_kit_is_versioned_with_the_service() -> None:
    assert importlib.metadata.version("scoreboard-client") == __version__


def test_a_game_server_round_trip(server: Server, api_key: str) -> None:
    sb = Scoreboard(server.http, api_key=api_key)
    assert sb.health()["version"] == __version__
    user_id = sb.register(username="kit_alice", email="kit_alice@example.com", password="correct-horse-battery")
    pair = sb.login(username="kit_alice", password="correct-horse-battery")
    assert pair.user_id == user_id

    offline = mint_action_token(
        settings.ACTION_TOKEN_SECRET, user_id=user_id, action_type="LEVEL_COMPLETION", score_increment=300
    )
    first = sb.submit_score(offline, access_token=pair.access, level_id="level_1")
    assert isinstance(first, ScoreUpdate)
    assert (first.old_score, first.new_score, first.increment, first.new_rank) == (0, 300, 300, 1)

    with pytest.raises(ActionTokenReplayed) as replay:
        sb.submit_score(offline, access_token=pair.access)
    assert replay.value.status == 409
    assert replay.value.original is not None and replay.value.original["new_score"] == 300

    minted = sb.create_action(user_id=user_id, action_type="LEVEL_COMPLETION", score_increment=50)
    assert minted.action_id and minted.expires_at
    second = sb.submit_score(minted.action_token, access_token=pair.access)
    assert second.new_score == 350

    board = sb.leaderboard(limit=5)
    assert isinstance(board, Leaderboard)
    assert [(e.rank, e.username, e.score) for e in board.entries] == [(1, "kit_alice", 350)]
    assert board.total_players == 1


def test_errors_are_typed(server: Server, api_key: str) -> None:
    sb = Scoreboard(server.http, api_key=api_key)
    with pytest.raises(Unauthorized) as bad_login:
        sb.login(username="nobody", password="wrong-password-123")
    assert bad_login.value.code == "invalid_credentials"
    with pytest.raises(BadRequest) as bad_limit:
        sb.leaderboard(limit=0)
    assert bad_limit.value.status == 400
    forged = mint_action_token("not-the-secret-" * 3, user_id="x", action_type="LEVEL_COMPLETION", score_increment=1)
    user_id = sb.register(username="kit_bob", email="kit_bob@example.com", password="correct-horse-battery")
    access = sb.login(username="kit_bob", password="correct-horse-battery").access
    with pytest.raises(Unauthorized):
        sb.submit_score(forged, access_token=access)
    someone_else = mint_action_token(
        settings.ACTION_TOKEN_SECRET,
        user_id="00000000-0000-0000-0000-000000000000",
        action_type="LEVEL_COMPLETION",
        score_increment=1,
    )
    with pytest.raises(Forbidden):
        sb.submit_score(someone_else, access_token=access)
    with pytest.raises(Unauthorized):
        Scoreboard(server.http, api_key="sbk_0000_nope").create_action(
            user_id=user_id, action_type="LEVEL_COMPLETION", score_increment=1
        )
    with pytest.raises(TransportError):
        Scoreboard("http://127.0.0.1:9", timeout=2).leaderboard()


def test_a_player_of_the_studios_identity_provider_submits_through_the_kit(
    server: Server, api_key: str, idp: LocalIssuer
) -> None:
    """The issue's walk-through: a local OIDC issuer's token, a score through the kit, read back."""
    access = idp.token("steam:7656119", alg="RS256", preferred_username="Gordon")
    sb = Scoreboard(server.http, api_key=api_key, access_token=access)
    me = sb.me()
    assert me.issuer == idp.issuer and me.username == "Gordon"
    token = mint_action_token(
        settings.ACTION_TOKEN_SECRET, user_id=me.user_id, action_type="LEVEL_COMPLETION", score_increment=640
    )
    assert sb.submit_score(token).new_score == 640
    assert [(e.username, e.score) for e in sb.leaderboard().entries] == [("Gordon", 640)]
    with pytest.raises(Unauthorized):
        sb.me(access_token=idp.token("steam:7656119", aud="another-game"))


def test_offline_tokens_refuse_bad_arguments() -> None:
    with pytest.raises(ValueError):
        mint_action_token("", user_id="u", action_type="A", score_increment=1)
    with pytest.raises(TypeError):
        mint_action_token("s", user_id="u", action_type="A", score_increment=True)
    with pytest.raises(ValueError):
        Scoreboard("ftp://example")


def test_board_reads(server: Server, api_key: str) -> None:
    sb = Scoreboard(server.http, api_key=api_key)
    weekly = sb.create_board("kit-weekly", title="Weekly sprint", period="weekly", action_types=["LEVEL_COMPLETION"])
    assert (weekly.id, weekly.period) == ("kit-weekly", "weekly")
    assert re.fullmatch(r"\d{4}-W\d{2}", weekly.current_period.key)
    assert {b.id for b in sb.boards()} >= {"global", "kit-weekly"}

    players = []
    for i, increment in enumerate((500, 300, 100)):
        name = f"kit_board_{i}"
        user_id = sb.register(username=name, email=f"{name}@example.com", password="correct-horse-battery")
        access = sb.login(username=name, password="correct-horse-battery").access
        token = mint_action_token(
            settings.ACTION_TOKEN_SECRET, user_id=user_id, action_type="LEVEL_COMPLETION", score_increment=increment
        )
        result = sb.submit_score(token, access_token=access)
        assert {b["board"] for b in result.boards} >= {"global", "kit-weekly"}
        players.append((user_id, access))

    first = sb.board_entries("kit-weekly", limit=2)
    assert [e.score for e in first.entries] == [500, 300] and first.entry_count == 3
    assert first.next_cursor is not None and first.period.key == weekly.current_period.key
    rest = sb.board_entries("kit-weekly", limit=2, cursor=first.next_cursor)
    assert [e.score for e in rest.entries] == [100] and rest.next_cursor is None

    middle_id, middle_access = players[1]
    mine = sb.player_standing("kit-weekly", access_token=middle_access)
    assert (mine.user_id, mine.rank, mine.score) == (middle_id, 2, 300)
    around = sb.around("kit-weekly", middle_id, above=1, below=1)
    assert [e.score for e in around.entries] == [500, 300, 100] and around.player.rank == 2
    assert {s.board for s in sb.standings(access_token=middle_access)} >= {"global", "kit-weekly"}
    with pytest.raises(NotFound):
        sb.board_entries("no-such-board")
