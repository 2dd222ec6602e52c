"""Game-server API keys: created once (shown once), stored hashed, revocable; they guard POST /v1/actions."""

from __future__ import annotations

import uuid
from io import StringIO

import pytest
from django.core.management import call_command

from accounts import services
from accounts.models import GameServerKey

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]


def mint_request(client, key: str | None, user_id: str, **overrides):
    body = {"user_id": user_id, "action_type": "LEVEL_COMPLETION", "score_increment": 10, **overrides}
    headers = {"HTTP_X_API_KEY": key} if key is not None else {}
    return client.post("/v1/actions", body, format="json", **headers)


def test_command_prints_a_key_that_is_stored_only_as_a_hash(api_client, player):
    out = StringIO()
    call_command("create_game_server_key", "arcade", stdout=out)
    raw = out.getvalue().strip()
    stored = GameServerKey.objects.get(name="arcade")
    assert raw.startswith("sbk_") and stored.prefix in raw
    assert raw not in (stored.key_hash, stored.prefix) and len(stored.key_hash) == 64
    assert mint_request(api_client, raw, str(player.pk)).status_code == 201
    stored.refresh_from_db()
    assert stored.last_used_at is not None


@pytest.mark.parametrize("key", [None, "", "sbk_deadbeef_nope", "not-a-key", "sbk__"])
def test_missing_or_unknown_key_is_401(api_client, player, key):
    services.game_server_key_create(name="arcade")
    response = mint_request(api_client, key, str(player.pk))
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"


def test_key_with_the_right_prefix_but_wrong_secret_is_401(api_client, player):
    _key, raw = services.game_server_key_create(name="arcade")
    assert mint_request(api_client, raw[:-2] + "xx", str(player.pk)).status_code == 401


def test_revoked_key_is_401(api_client, player):
    key, raw = services.game_server_key_create(name="arcade")
    services.game_server_key_revoke(key=key)
    assert mint_request(api_client, raw, str(player.pk)).status_code == 401


def test_minting_validates_the_action(api_client, player, make_player):
    _key, raw = services.game_server_key_create(name="arcade")
    assert mint_request(api_client, raw, str(uuid.uuid4())).status_code == 404
    assert mint_request(api_client, raw, str(make_player(is_active=False).pk)).status_code == 404
    assert mint_request(api_client, raw, "not-a-uuid").status_code == 400
    assert mint_request(api_client, raw, str(player.pk), score_increment=5000).status_code == 400
    assert mint_request(api_client, raw, str(player.pk), score_increment=0).status_code == 400
    assert mint_request(api_client, raw, str(player.pk), score_increment="10").status_code == 400
    assert mint_request(api_client, raw, str(player.pk), action_type="BOSS_KILL").status_code == 400
    assert mint_request(api_client, raw, str(player.pk), extra=1).status_code == 400


def test_command_refuses_a_taken_name_without_a_traceback():
    from django.core.management.base import CommandError

    call_command("create_game_server_key", "arcade", stdout=StringIO())
    with pytest.raises(CommandError, match="already exists"):
        call_command("create_game_server_key", "arcade", stdout=StringIO())
    assert GameServerKey.objects.filter(name="arcade").count() == 1
