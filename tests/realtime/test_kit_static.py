"""The spectator page loads the JS client kit as a static file, not an inline copy of it."""

from __future__ import annotations

import re

import pytest
from django.test import Client

pytestmark = [pytest.mark.embedded, pytest.mark.django_db]

KIT_PATH = "/static/scoreboard-client/scoreboard.js"


def test_the_kit_is_served_as_a_javascript_module() -> None:
    response = Client().get(KIT_PATH)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/javascript")
    body = b"".join(response.streaming_content)  # type: ignore[attr-defined]
    assert b"export class LiveBoard" in body


def test_the_page_imports_the_kit_and_has_no_connection_code_of_its_own() -> None:
    html = Client().get("/").content.decode()
    assert re.search(r'import \{ LiveBoard \} from "' + re.escape(KIT_PATH) + '"', html)
    assert "new WebSocket" not in html and "EventSource" not in html
