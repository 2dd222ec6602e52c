"""The lean paths (score update, leaderboard) skip session, CSRF, auth and messages middleware;
every other path keeps them, and the responses keep their security headers."""

from __future__ import annotations

import pytest
from django.test import Client

from tests.conftest import submit

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]


def test_a_score_update_skips_the_session_and_django_user(player, client_for, mint):
    response = submit(client_for(player), mint(player, increment=5))
    assert response.status_code == 200
    request = response.wsgi_request
    assert not hasattr(request, "session") and not hasattr(request, "_messages")
    assert request.user == player  # DRF's user, from the JWT
    assert response["X-Frame-Options"] == "DENY" and response["X-Content-Type-Options"] == "nosniff"


def test_the_leaderboard_skips_them_too(api_client):
    response = api_client.get("/v1/leaderboard")
    assert response.status_code == 200
    assert not hasattr(response.wsgi_request, "session")
    assert "csrftoken" not in response.cookies
    assert response["X-Frame-Options"] == "DENY" and response["X-Content-Type-Options"] == "nosniff"


def test_other_paths_keep_the_whole_middleware(api_client):
    board = api_client.get("/v1/boards")
    assert board.status_code == 200
    assert hasattr(board.wsgi_request, "session") and hasattr(board.wsgi_request, "_messages")
    login = Client().get("/admin/login/")
    assert login.status_code == 200
    assert "csrftoken" in login.cookies  # the admin's CSRF protection still sets its cookie


def test_the_admin_still_refuses_a_post_without_a_csrf_token(admin_user):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(admin_user)
    assert browser.post("/admin/logout/").status_code == 403
