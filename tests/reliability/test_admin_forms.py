"""Admin forms never answer 500: every form of a model with a unique field validates it (the
case-insensitive constraints included) and shows the error on the form instead."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from accounts import services
from accounts.models import GameServerKey, User
from tests.factories import PlayerFactory

pytestmark = [pytest.mark.embedded, pytest.mark.django_db]

PASSWORD = "a-long-Passw0rd-for-admin"


@pytest.fixture
def admin(db: None) -> Client:
    User.objects.create_superuser(username="root", email="root@example.com", password=PASSWORD)
    client = Client()
    assert client.login(username="root", password=PASSWORD)
    return client


def add_user(client: Client, username: str, email: str) -> Any:
    return client.post(
        "/admin/accounts/user/add/",
        {"username": username, "email": email, "usable_password": "true", "password1": PASSWORD, "password2": PASSWORD},
    )


def form_errors(response: Any) -> dict[str, list[str]]:
    form = response.context["adminform"].form
    return {name: list(errors) for name, errors in form.errors.items()}


def test_add_user_asks_for_the_email_and_two_users_in_a_row_work(admin: Client) -> None:
    page = admin.get("/admin/accounts/user/add/")
    assert page.status_code == 200 and 'name="email"' in page.content.decode()

    first, second = add_user(admin, "alice", "alice@example.com"), add_user(admin, "bob", "bob@example.com")

    assert (first.status_code, second.status_code) == (302, 302)
    assert {u.username: u.email for u in User.objects.filter(username__in=["alice", "bob"])} == {
        "alice": "alice@example.com",
        "bob": "bob@example.com",
    }


@pytest.mark.parametrize(
    ("username", "email", "field"),
    [
        ("carol", "ALICE@example.com", "email"),  # the same email in another case
        ("ALICE", "other@example.com", "username"),  # the same username in another case
        ("dave", "", "email"),  # required
        ("erin", "not-an-email", "email"),  # validated
    ],
)
def test_add_user_refuses_taken_or_invalid_values_on_the_form(admin: Client, username: str, email: str, field: str):
    assert add_user(admin, "alice", "alice@example.com").status_code == 302
    response = add_user(admin, username, email)
    assert response.status_code == 200
    assert field in form_errors(response)
    assert User.objects.filter(username__iexact=username).count() == (1 if username.lower() == "alice" else 0)


def test_changing_a_player_to_a_taken_email_or_username_is_a_form_error(admin: Client) -> None:
    taken, player = PlayerFactory.create(email="taken@example.com"), PlayerFactory.create()
    page = admin.get(f"/admin/accounts/user/{player.pk}/change/")
    data = {
        name: value
        for name, value in page.context["adminform"].form.initial.items()
        if name in ("username", "email", "first_name", "last_name", "is_active")
    }
    data.update({"date_joined_0": "2026-01-01", "date_joined_1": "00:00:00"})
    for inline in page.context["inline_admin_formsets"]:  # the management forms of the read-only inlines
        management = inline.formset.management_form
        data.update({management.add_prefix(name): value for name, value in management.initial.items()})
    for change, field in (
        ({"email": "TAKEN@example.com"}, "email"),
        ({"username": taken.username.upper()}, "username"),
    ):
        response = admin.post(f"/admin/accounts/user/{player.pk}/change/", {**data, **change})
        assert response.status_code == 200, change
        assert field in form_errors(response)


def test_a_game_server_key_with_a_taken_name_is_a_form_error(admin: Client) -> None:
    services.game_server_key_create(name="arcade")
    response = admin.post("/admin/accounts/gameserverkey/add/", {"name": "arcade"})
    assert response.status_code == 200
    assert "name" in form_errors(response)
    assert GameServerKey.objects.filter(name="arcade").count() == 1
    assert admin.post("/admin/accounts/gameserverkey/add/", {"name": "arcade-2"}).status_code == 302


def test_a_group_with_a_taken_name_is_a_form_error(admin: Client) -> None:
    assert admin.post("/admin/auth/group/add/", {"name": "support"}).status_code == 302
    response = admin.post("/admin/auth/group/add/", {"name": "support"})
    assert response.status_code == 200 and "name" in form_errors(response)
