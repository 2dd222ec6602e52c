"""Banning or unbanning a player by hand in the user admin updates the board at once."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast

import pytest
from django.contrib import admin

from accounts.admin import UserAdmin
from accounts.models import User
from scores import selectors
from tests.conftest import submit

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]


def _board_ids() -> list[str]:
    return [row.user_id for row in selectors.leaderboard_top(limit=10).rows]


def test_toggling_is_active_in_the_user_admin_moves_the_player_off_and_back_on_the_board(
    player, make_player, client_for, mint, rf, django_capture_on_commit_callbacks
):
    assert submit(client_for(player), mint(player, increment=300)).status_code == 200
    assert _board_ids() == [str(player.pk)]
    model_admin = UserAdmin(User, admin.site)
    request = rf.post("/admin/")
    request.user = make_player(username="mod_bob", is_staff=True, is_superuser=True)

    player.is_active = False
    with django_capture_on_commit_callbacks(execute=True):
        model_admin.save_model(request, player, cast(Any, SimpleNamespace(changed_data=["is_active"])), change=True)
    assert _board_ids() == []

    player.is_active = True
    with django_capture_on_commit_callbacks(execute=True):
        model_admin.save_model(request, player, cast(Any, SimpleNamespace(changed_data=["is_active"])), change=True)
    assert _board_ids() == [str(player.pk)]


def test_saving_a_player_in_the_admin_never_writes_back_a_stale_score(player, client_for, mint, rf):
    stale = User.objects.get(pk=player.pk)  # what the admin form loaded
    assert submit(client_for(player), mint(player, increment=300)).status_code == 200  # played meanwhile
    stale.first_name = "Renamed"
    UserAdmin(User, admin.site).save_model(
        rf.post("/admin/"), stale, cast(Any, SimpleNamespace(changed_data=["first_name"])), change=True
    )
    player.refresh_from_db()
    assert player.current_score == 300
    assert player.first_name == "Renamed"


def test_changing_a_password_in_the_admin_never_writes_back_a_stale_score(player, client_for, mint):
    from accounts.admin import PlayerPasswordChangeForm

    stale = User.objects.get(pk=player.pk)  # what the admin's password view loaded
    assert submit(client_for(player), mint(player, increment=300)).status_code == 200
    form = PlayerPasswordChangeForm(
        stale, data={"password1": "a-new-long-pass-phrase", "password2": "a-new-long-pass-phrase"}
    )
    assert form.is_valid(), form.errors
    form.save()
    player.refresh_from_db()
    assert player.current_score == 300
    assert player.check_password("a-new-long-pass-phrase")


def test_a_ban_by_hand_is_audited_like_every_moderator_action(
    player, make_player, rf, django_capture_on_commit_callbacks
):
    from fraud.models import FraudLog, ModerationAction

    model_admin = UserAdmin(User, admin.site)
    request = rf.post("/admin/")
    request.user = make_player(username="mod_carol", is_staff=True, is_superuser=True)
    for active in (False, False, True):
        player.is_active = active
        with django_capture_on_commit_callbacks(execute=True):
            model_admin.save_model(request, player, cast(Any, SimpleNamespace(changed_data=["is_active"])), change=True)
    audit = list(ModerationAction.objects.filter(fraud_log__user=player).order_by("created_at"))
    assert [a.details["ban"] for a in audit] == ["banned", "already banned", "unbanned"]
    assert {a.moderator_username for a in audit} == {"mod_carol"}
    assert all(a.details["points_removed"] == 0 for a in audit)
    assert FraudLog.objects.filter(user=player, status=FraudLog.Status.OPEN).count() == 0
    player.refresh_from_db()
    assert player.is_active
