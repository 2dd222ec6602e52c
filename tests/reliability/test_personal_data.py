"""Data we keep: addresses and user agents are cleared after PERSONAL_DATA_RETENTION_DAYS by a beat
task, and a player can be erased (GDPR): anonymised, off every board, sessions ended, audited."""

from __future__ import annotations

import datetime as dt

import pytest
from django.test import Client, override_settings
from django.utils import timezone

from accounts import services
from accounts.models import AccountDeletion, ExternalIdentity, User
from fraud.models import FraudLog
from scoreboard import erasure
from scoreboard.errors import Conflict
from scoreboard.tasks import personal_data_retention_task
from scores.models import ScoreHistory
from scores.selectors import leaderboard_top
from tests.conftest import submit
from tests.factories import PLAYER_PASSWORD

pytestmark = [pytest.mark.embedded, pytest.mark.django_db]


def scored(client_for, mint, player, increment: int = 100) -> ScoreHistory:
    response = submit(client_for(player), mint(player, increment=increment), **{})
    assert response.status_code == 200, response.content
    return ScoreHistory.objects.filter(user=player).latest("created_at")


@override_settings(PERSONAL_DATA_RETENTION_DAYS=90)
def test_addresses_and_user_agents_older_than_the_retention_are_cleared(make_player, client_for, mint, unthrottled):
    player = make_player()
    old, recent = scored(client_for, mint, player), scored(client_for, mint, player)
    ScoreHistory.objects.filter(pk__in=[old.pk, recent.pk]).update(ip_address="198.51.100.4", user_agent="game/1.0")
    ScoreHistory.objects.filter(pk=old.pk).update(created_at=timezone.now() - dt.timedelta(days=91))
    old_log = FraudLog.objects.create(
        user=player, event_type="x", risk_score=0, ip_address="198.51.100.4", user_agent="a"
    )
    new_log = FraudLog.objects.create(
        user=player, event_type="x", risk_score=0, ip_address="198.51.100.5", user_agent="b"
    )
    FraudLog.objects.filter(pk=old_log.pk).update(created_at=timezone.now() - dt.timedelta(days=91))

    assert personal_data_retention_task.apply().get() == {"score_history": 1, "fraud_logs": 1}

    for row in (old, recent, old_log, new_log):
        row.refresh_from_db()
    assert (old.ip_address, old.user_agent) == (None, "")
    assert (recent.ip_address, recent.user_agent) == ("198.51.100.4", "game/1.0")
    assert (old_log.ip_address, old_log.user_agent) == (None, "")
    assert new_log.ip_address == "198.51.100.5"
    assert old.score_increment == 100  # the row itself stays: it is the score's audit trail
    assert personal_data_retention_task.apply().get() == {"score_history": 0, "fraud_logs": 0}


def test_erasing_a_player_anonymises_them_takes_them_off_the_board_and_is_audited(
    make_player, client_for, mint, unthrottled, api_client, django_capture_on_commit_callbacks
):
    player, other = make_player(), make_player()
    history = scored(client_for, mint, player, increment=500)
    scored(client_for, mint, other, increment=100)
    ScoreHistory.objects.filter(pk=history.pk).update(ip_address="198.51.100.4", user_agent="game/1.0")
    FraudLog.objects.create(user=player, event_type="x", risk_score=0, ip_address="198.51.100.4", user_agent="a")
    ExternalIdentity.objects.create(issuer="https://id.example.com/", subject="abc", user=player)
    session = services.player_tokens_issue(user=player)
    name, email = player.username, player.email
    assert [r.user_id for r in leaderboard_top(limit=10).rows] == [str(player.pk), str(other.pk)]

    with django_capture_on_commit_callbacks(execute=True):
        audit = erasure.player_delete(user_id=str(player.pk), requested_by="dpo", reason="erasure request #12")

    player.refresh_from_db()
    assert player.username.startswith("deleted-") and player.email.endswith("@deleted.invalid")
    assert name not in (player.username, player.email) and email != player.email
    assert not player.is_active and not player.has_usable_password()
    assert not ExternalIdentity.objects.filter(user=player).exists()
    assert not ScoreHistory.objects.filter(user=player, ip_address__isnull=False).exists()
    assert not FraudLog.objects.filter(user=player).exclude(user_agent="").exists()
    assert ScoreHistory.objects.filter(user=player).count() == 1  # history stays, anonymous
    assert [r.user_id for r in leaderboard_top(limit=10).rows] == [str(other.pk)]
    assert api_client.get("/v1/leaderboard").json()["data"]["leaderboard"][0]["user_id"] == str(other.pk)
    refused = api_client.get("/v1/auth/me", HTTP_AUTHORIZATION=f"Bearer {session.access}")
    assert refused.status_code in (401, 403)
    login = api_client.post("/v1/auth/login", {"username": name, "password": PLAYER_PASSWORD}, format="json")
    assert login.status_code == 401
    stored = AccountDeletion.objects.get()
    assert (stored.pk, stored.user_id, stored.requested_by, stored.reason) == (
        audit.pk,
        player.pk,
        "dpo",
        "erasure request #12",
    )
    assert stored.details == {
        "score_history_rows_cleared": 1,
        "fraud_logs_cleared": 1,
        "external_identities_removed": 1,
    }
    with pytest.raises(Conflict):
        erasure.player_delete(user_id=str(player.pk), requested_by="dpo", reason="again")


def test_the_admin_action_erases_and_never_500s_on_a_second_try(make_player) -> None:
    User.objects.create_superuser(username="root", email="root@example.com", password="a-long-Passw0rd-x")
    admin = Client()
    assert admin.login(username="root", password="a-long-Passw0rd-x")
    player = make_player()
    body = {"action": "delete_personal_data", "_selected_action": [str(player.pk)]}
    assert admin.post("/admin/accounts/user/", body).status_code == 302
    assert AccountDeletion.objects.filter(user_id=player.pk, requested_by="root").count() == 1
    assert admin.post("/admin/accounts/user/", body, follow=True).status_code == 200
    assert AccountDeletion.objects.filter(user_id=player.pk).count() == 1
