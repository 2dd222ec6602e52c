"""The board endpoints as a client sees them: shapes, paging, "me", friends, export, and clear errors."""

from __future__ import annotations

import csv
import io

import pytest
from django.test import Client

from accounts import services as account_services
from scores import registry
from tests.conftest import submit

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]


@pytest.fixture
def server_key() -> str:
    _, raw = account_services.game_server_key_create(name="game-server")
    return raw


def create(api_client, key: str, **body):
    response = api_client.post("/v1/boards", body, format="json", HTTP_X_API_KEY=key)
    registry.boards_cache_clear()
    return response


@pytest.fixture
def scored(make_player, client_for, mint, unthrottled, api_client, server_key):
    """A weekly board and five players on it (500 ... 100 points)."""
    assert create(api_client, server_key, id="weekly", title="This week", period="weekly").status_code == 201
    players = []
    for i, points in enumerate([500, 400, 300, 200, 100]):
        player = make_player(username=f"p{i}")
        assert submit(client_for(player), mint(player, increment=points)).status_code == 200
        players.append(player)
    return players


def test_create_list_get_and_edit_a_board(api_client, server_key):
    created = create(api_client, server_key, id="fastest-lap", sort="asc", operator="best", action_types=["LAP_TIME"])
    assert created.status_code == 201, created.json()
    assert created.json()["data"]["current_period"]["key"] == "all"
    listed = api_client.get("/v1/boards").json()["data"]["boards"]
    assert [b["id"] for b in listed] == ["global", "fastest-lap"]
    assert listed[1]["sort"] == "asc" and listed[1]["entry_count"] == 0
    edited = api_client.patch(
        "/v1/boards/fastest-lap", {"title": "Fastest lap"}, format="json", HTTP_X_API_KEY=server_key
    )
    assert edited.status_code == 200 and edited.json()["data"]["title"] == "Fastest lap"
    assert api_client.get("/v1/boards/fastest-lap").json()["data"]["title"] == "Fastest lap"


def test_board_writes_need_a_game_server_key_and_valid_fields(api_client, server_key):
    assert api_client.post("/v1/boards", {"id": "x"}, format="json").status_code == 401
    assert create(api_client, server_key, id="Bad Id").json()["error"]["code"] == "invalid_board"
    assert create(api_client, server_key, id="c", period="cron", cron="not a cron").status_code == 400
    assert create(api_client, server_key, id="m", metadata={"k": "x" * 5000}).status_code == 400
    assert create(api_client, server_key, id="u", unknown=1).status_code == 400
    assert create(api_client, server_key, id="t", action_types=["NOPE"]).status_code == 400
    assert create(api_client, server_key, id="dup").status_code == 201
    assert create(api_client, server_key, id="dup").status_code == 409
    global_sort = api_client.patch("/v1/boards/global", {"sort": "asc"}, format="json", HTTP_X_API_KEY=server_key)
    assert global_sort.status_code == 409
    assert api_client.get("/v1/boards/nope").status_code == 404


def test_sort_is_fixed_once_the_board_has_entries(api_client, server_key, scored):
    response = api_client.patch("/v1/boards/weekly", {"sort": "asc"}, format="json", HTTP_X_API_KEY=server_key)
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "board_has_entries"


def test_a_submission_answers_for_every_board(make_player, client_for, mint, unthrottled, scored):
    newcomer = make_player()
    data = submit(client_for(newcomer), mint(newcomer, increment=450)).json()["data"]
    assert [(b["board"], b["new_rank"]) for b in data["boards"]] == [("global", 2), ("weekly", 2)]
    assert (data["new_rank"], data["new_score"]) == (2, 450)  # the SPEC fields: the global board


def test_entries_page_with_an_opaque_cursor(api_client, scored):
    first = api_client.get("/v1/boards/weekly/entries?limit=2").json()["data"]
    assert [e["rank"] for e in first["entries"]] == [1, 2]
    assert first["entry_count"] == 5 and first["period"]["key"].count("-W") == 1
    second = api_client.get(f"/v1/boards/weekly/entries?limit=2&cursor={first['next_cursor']}").json()
    assert "data" in second, second
    second = second["data"]
    third = api_client.get(f"/v1/boards/weekly/entries?limit=2&cursor={second['next_cursor']}").json()
    assert "data" in third, third
    third = third["data"]
    assert [e["username"] for e in second["entries"] + third["entries"]] == ["p2", "p3", "p4"]
    assert third["next_cursor"] is None
    bad = api_client.get("/v1/boards/weekly/entries?cursor=garbage")
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_cursor"
    other = api_client.get(f"/v1/boards/global/entries?cursor={first['next_cursor']}")
    assert other.status_code == 400


def test_periods_by_name_previous_and_bad_keys(api_client, scored):
    assert api_client.get("/v1/boards/weekly/entries?period=previous").json()["data"]["entries"] == []
    assert api_client.get("/v1/boards/weekly/entries?period=2020-W01").status_code == 200
    for bad in ("2020-13", "yesterday", "2020-W99"):
        response = api_client.get(f"/v1/boards/weekly/entries?period={bad}")
        assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_period"
    assert api_client.get("/v1/boards/global/entries?period=previous").status_code == 400  # all time has none


def test_my_rank_and_my_neighbours(client_for, api_client, scored):
    me = client_for(scored[2])
    rank = me.get("/v1/boards/weekly/players/me").json()["data"]
    assert (rank["rank"], rank["score"], rank["entry_count"], rank["percentile"]) == (3, 300, 5, 50.0)
    around = me.get("/v1/boards/weekly/around/me?above=1&below=1").json()["data"]
    assert [e["rank"] for e in around["entries"]] == [2, 3, 4]
    top = api_client.get(f"/v1/boards/weekly/around/{scored[0].pk}?above=2&below=0").json()["data"]
    assert [e["rank"] for e in top["entries"]] == [1, 2, 3]  # filled from below
    assert api_client.get("/v1/boards/weekly/players/me").status_code == 401
    assert api_client.get(f"/v1/boards/weekly/around/{scored[0].pk}?above=51").status_code == 400
    missing = api_client.get("/v1/boards/weekly/players/00000000-0000-4000-8000-000000000000")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_ranked"


def test_friends_lookup(api_client, scored):
    body = {"user_ids": [str(scored[4].pk), str(scored[1].pk)]}
    data = api_client.post("/v1/boards/weekly/lookup", body, format="json").json()["data"]
    assert [(e["username"], e["rank"], e["rank_in_set"]) for e in data["entries"]] == [("p1", 2, 1), ("p4", 5, 2)]
    too_many = {"user_ids": [str(scored[0].pk)] * 501}
    assert api_client.post("/v1/boards/weekly/lookup", too_many, format="json").status_code == 400
    assert api_client.post("/v1/boards/weekly/lookup", {"user_ids": ["x"]}, format="json").status_code == 400


def test_standings_on_every_board(client_for, scored):
    data = client_for(scored[1]).get("/v1/players/me/standings").json()["data"]
    assert [(s["board"], s["rank"]) for s in data["standings"]] == [("global", 2), ("weekly", 2)]


def test_export_streams_csv_for_staff_or_a_game_server(api_client, server_key, scored, make_player):
    assert api_client.get("/v1/boards/weekly/export.csv").status_code == 401
    response = api_client.get("/v1/boards/weekly/export.csv", HTTP_X_API_KEY=server_key)
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[0] == ["rank", "user_id", "username", "score", "last_updated"]
    assert [(r[0], r[2], r[3]) for r in rows[1:]] == [
        ("1", "p0", "500"),
        ("2", "p1", "400"),
        ("3", "p2", "300"),
        ("4", "p3", "200"),
        ("5", "p4", "100"),
    ]
    staff = Client()
    staff.force_login(make_player(is_staff=True))
    assert staff.get("/v1/boards/weekly/export.csv").status_code == 200


def test_the_board_page_and_the_picker(scored):
    page = Client().get("/boards/weekly/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "This week" in html and "p0" in html and 'href="/boards/weekly/"' in html
    assert Client().get("/boards/nope/").status_code == 404
    assert 'href="/boards/weekly/"' in Client().get("/").content.decode()
