"""docs/asyncapi.yaml describes what the server really sends: messages captured from real uvicorn
processes (WebSocket and SSE) are validated against the document's payload schemas, and the close
codes it documents are the ones a client gets. (The document itself is validated by the AsyncAPI
parser in `make asyncapi-check`, which .ci/run runs.)"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
import websockets
import yaml

from scoreboard.version import __version__
from tests.conftest import in_worker_thread
from tests.realtime.test_multiprocess import RECEIVE_TIMEOUT, _player_with_token, next_message, sse_events, submit_to

DOCUMENT = yaml.safe_load((Path(__file__).resolve().parents[2] / "docs" / "asyncapi.yaml").read_text())


def _inline(node: Any) -> Any:
    """The schema with every local $ref replaced by its target (the document has no cycles)."""
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/"):
            target: Any = DOCUMENT
            for part in ref[2:].split("/"):
                target = target[part]
            return _inline(target)
        return {key: _inline(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_inline(item) for item in node]
    return node


def _message(message_id: str) -> dict[str, Any]:
    return _inline(DOCUMENT["components"]["messages"][message_id])


def assert_matches(message_id: str, payload: Any) -> None:
    schema = _message(message_id)["payload"]
    validator = jsonschema.Draft7Validator(schema, format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER)
    errors = sorted(validator.iter_errors(payload), key=lambda e: list(e.path))
    assert not errors, f"{message_id}: {payload} does not match docs/asyncapi.yaml: {[e.message for e in errors]}"


BY_TYPE = {
    "leaderboard_update": "leaderboardUpdate",
    "rank_update": "rankUpdate",
    "auth_ok": "authOk",
    "subscribed": "subscribed",
    "error": "error",
    "pong": "pong",
}


def test_the_document_is_versioned_with_the_service_and_names_its_messages() -> None:
    assert DOCUMENT["info"]["version"] == __version__
    names = {m["name"]: key for key, m in DOCUMENT["components"]["messages"].items()}
    for kind, message_id in BY_TYPE.items():
        assert names[kind] == message_id
    assert {c["address"] for c in DOCUMENT["channels"].values()} == {"/v1/realtime", "/v1/leaderboard/stream"}


def test_a_schema_refuses_a_message_that_breaks_it() -> None:
    """The check below can fail: a snapshot without seq, or with a string score, is refused."""
    good = {"type": "leaderboard_update", "seq": 3, "leaderboard": [], "total_players": 0, "last_updated": None}
    assert_matches("leaderboardUpdate", good)
    with pytest.raises(AssertionError):
        assert_matches("leaderboardUpdate", {k: v for k, v in good.items() if k != "seq"})
    row = {"rank": 1, "user_id": "6f1c1c4e-0000-4000-8000-000000000000", "username": "a", "score": "9"}
    row["last_updated"] = None
    with pytest.raises(AssertionError):
        assert_matches("leaderboardUpdate", {**good, "leaderboard": [row]})


def _api_key() -> str:
    from accounts import services as account_services

    return account_services.game_server_key_create(name="asyncapi")[1]


async def _weekly_board(server: Any) -> str:
    """Created through the API of the process the socket talks to, so its board cache knows it at once."""
    api_key = await in_worker_thread(_api_key)()
    async with httpx.AsyncClient(base_url=server.http, timeout=RECEIVE_TIMEOUT) as client:
        response = await client.post(
            "/v1/boards", json={"id": "asyncapi-weekly", "period": "weekly"}, headers={"X-API-Key": api_key}
        )
    assert response.status_code == 201, response.text
    return str(response.json()["data"]["id"])


@pytest.mark.django_db(transaction=True)
@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.slow
async def test_real_websocket_and_sse_messages_match_the_document(servers):
    process_a, process_b = servers
    player, access = await in_worker_thread(_player_with_token)()
    weekly = await _weekly_board(process_a)
    seen: set[str] = set()

    def check(payload: dict[str, Any]) -> None:
        assert_matches(BY_TYPE[payload["type"]], payload)
        seen.add(payload["type"])

    client_messages = {
        "auth": {"type": "auth", "token": access},
        "ping": {"type": "ping"},
        "subscribe": {"type": "subscribe", "board": "global"},
    }
    for message_id, payload in client_messages.items():
        assert_matches(message_id, payload)  # what the JS kit sends

    async with websockets.connect(f"{process_a.ws}/v1/realtime") as ws:
        check(await next_message(ws, "leaderboard_update"))
        await ws.send(json.dumps(client_messages["auth"]))
        check(await next_message(ws, "auth_ok"))
        await ws.send(json.dumps(client_messages["ping"]))
        check(await next_message(ws, "pong"))
        await ws.send("{not json")
        check(await next_message(ws, "error"))
        await ws.send(json.dumps({"type": "subscribe", "board": "no-such-board"}))
        unknown = await next_message(ws, "error")
        check(unknown)
        assert unknown["code"] == "unknown_board"
        await ws.send(json.dumps({"type": "subscribe", "board": weekly}))
        check(await next_message(ws, "subscribed"))
        other = await next_message(ws, "leaderboard_update")
        check(other)
        assert other["board"] == weekly and other["period"]
        await ws.send(json.dumps(client_messages["subscribe"]))  # back to global
        check(await next_message(ws, "subscribed"))
        check(await next_message(ws, "leaderboard_update"))
        async with (
            httpx.AsyncClient(base_url=process_a.http, timeout=RECEIVE_TIMEOUT) as client,
            client.stream("GET", "/v1/leaderboard/stream", headers={"Authorization": f"Bearer {access}"}) as response,
        ):
            events = sse_events(response)
            async with asyncio.timeout(RECEIVE_TIMEOUT):
                first = await anext(events)
                assert first["event"] == "leaderboard_update"
                check(json.loads(first["data"]))
                await submit_to(process_b, player, access, 120)
                check(await next_message(ws, "rank_update"))
                update = await next_message(ws, "leaderboard_update")
                check(update)
                assert update["leaderboard"], "a non-empty board was validated too"
                sse_kinds: set[str] = set()
                while sse_kinds != {"rank_update", "leaderboard_update"}:
                    event = await anext(events)
                    payload = json.loads(event["data"])
                    assert payload["type"] == event["event"]
                    assert ("id" in event) == (event["event"] == "leaderboard_update")  # as documented
                    assert_matches(BY_TYPE[event["event"]], payload)
                    sse_kinds.add(event["event"])
    assert seen == set(BY_TYPE)


@pytest.mark.django_db(transaction=True)
@pytest.mark.postgres
@pytest.mark.redis
async def test_an_invalid_token_gets_the_documented_error_and_close_code(servers):
    process_a, _ = servers
    async with websockets.connect(f"{process_a.ws}/v1/realtime") as ws:
        await next_message(ws, "leaderboard_update")
        await ws.send(json.dumps({"type": "auth", "token": "not-a-jwt"}))
        error = await next_message(ws, "error")
        assert_matches("error", error)
        assert error["code"] == "invalid_token"
        with pytest.raises(websockets.ConnectionClosed) as closed:
            async with asyncio.timeout(RECEIVE_TIMEOUT):
                await ws.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401
    assert "`4401`" in DOCUMENT["info"]["description"]
