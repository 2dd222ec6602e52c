"""The JS kit in a real headless Chromium: with WebSocket unavailable (a proxy that refuses the
upgrade, an old embedded browser) the spectator page still goes live through the SSE fallback."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.conftest import access_token_for
from tests.factories import PlayerFactory
from tests.realtime.conftest import action_token
from tests.realtime.test_browser import CHROMIUM, CHROMIUM_ARGS, WAIT_MS

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.postgres,
    pytest.mark.redis,
    pytest.mark.browser,
    pytest.mark.slow,
]


def test_without_websocket_the_page_goes_live_over_sse(servers):
    from playwright.sync_api import expect, sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs it (Debian package chromium)")
    page_server, api_server = servers
    player = PlayerFactory.create(username="SseFan")
    access = access_token_for(player)

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            console: list[str] = []
            page.on("console", lambda message: console.append(message.text))
            page.on("pageerror", lambda error: console.append(str(error)))
            page.add_init_script("delete window.WebSocket")
            page.add_init_script(
                "addEventListener('load', () => window.scoreboardLive.on('disconnected', (d) => console.log(d.reason)))"
            )
            page.goto(f"{page_server.http}/")
            try:
                expect(page.locator("#status")).to_have_attribute("data-state", "live", timeout=WAIT_MS)
            except AssertionError:
                raise AssertionError(f"not live; the page's console: {console}") from None
            assert page.evaluate("window.scoreboardLive.transport") == "sse"
            response = httpx.post(
                f"{api_server.http}/v1/scores/update",
                json={"action_token": action_token(player, 321)},
                headers={"Authorization": f"Bearer {access}"},
            )
            assert response.status_code == 200, response.text
            row = page.locator("#rows tr").nth(0)
            expect(row).to_contain_text("SseFan", timeout=WAIT_MS)
            expect(row).to_contain_text("321")
        finally:
            browser.close()
