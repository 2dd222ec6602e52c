"""Boards in Django admin: operators create and edit them there, with the API's rules as form errors."""

from __future__ import annotations

import datetime as dt

import pytest
from django.test import Client
from django.utils import timezone

from scores import registry, services
from scores.models import Board, BoardEntry, BoardPeriod

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]

ADD = "/admin/scores/board/add/"
FORM = {
    "title": "Weekly",
    "sort": "desc",
    "operator": "incr",
    "period": "weekly",
    "cron": "",
    "tie_policy": "first_reached",
    "action_types": "[]",
    "keep_periods": "52",
    "is_active": "on",
    "metadata": "{}",
}


@pytest.fixture
def admin_client(make_player) -> Client:
    client = Client()
    client.force_login(make_player(is_staff=True, is_superuser=True))
    return client


def test_an_operator_adds_a_board_and_a_bad_cron_is_a_form_error(admin_client):
    assert admin_client.post(ADD, {**FORM, "id": "weekly"}).status_code == 302
    assert Board.objects.get(pk="weekly").period == "weekly"
    bad = admin_client.post(ADD, {**FORM, "id": "sixhourly", "period": "cron", "cron": "every six hours"})
    assert bad.status_code == 200 and "cron" in bad.content.decode()
    assert not Board.objects.filter(pk="sixhourly").exists()


def test_sort_cannot_change_once_the_board_has_entries(admin_client, player, mint, unthrottled):
    assert admin_client.post(ADD, {**FORM, "id": "weekly"}).status_code == 302
    registry.boards_cache_clear()
    services.score_submit(user=player, action_token=mint(player, increment=10))
    assert BoardEntry.objects.filter(board_id="weekly").exists()
    response = admin_client.post("/admin/scores/board/weekly/change/", {**FORM, "sort": "asc"})
    assert response.status_code == 200 and "cannot change once the board has entries" in response.content.decode()
    assert Board.objects.get(pk="weekly").sort == "desc"


def test_close_ended_periods_now(admin_client, player, mint, unthrottled):
    assert admin_client.post(ADD, {**FORM, "id": "daily", "period": "daily"}).status_code == 302
    registry.boards_cache_clear()
    services.score_submit(user=player, action_token=mint(player, increment=10))
    period = BoardPeriod.objects.get(board_id="daily")
    # The day is over (as if the beat task had not run yet).
    BoardPeriod.objects.filter(pk=period.pk).update(ends_at=timezone.now() - dt.timedelta(minutes=5))
    response = admin_client.post(
        "/admin/scores/board/", {"action": "close_ended_periods", "_selected_action": ["daily"]}, follow=True
    )
    assert "Closed 1 period(s)" in response.content.decode()
    period.refresh_from_db()
    assert period.closed_at is not None and period.entry_count == 1
    assert BoardEntry.objects.get(board_id="daily").final_rank == 1


def test_the_global_board_cannot_be_deleted(admin_client):
    assert admin_client.get("/admin/scores/board/global/delete/").status_code == 403
