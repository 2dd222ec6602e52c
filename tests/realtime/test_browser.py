"""A real headless Chromium on the spectator page: a score submitted through the API (to another
server process) appears on the page without a reload. Saves a screenshot in test-artifacts/."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.conftest import access_token_for
from tests.factories import PlayerFactory
from tests.realtime.conftest import action_token

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.postgres,
    pytest.mark.redis,
    pytest.mark.browser,
    pytest.mark.slow,
]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
WAIT_MS = 10_000


def test_a_submitted_score_appears_on_the_page_without_reload(servers):
    from playwright.sync_api import expect, sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs it (Debian package chromium)")
    page_server, api_server = servers
    leader = PlayerFactory.create(username="Leader")
    challenger = PlayerFactory.create(username="Challenger")
    # Database work happens before Playwright starts: its event loop makes Django refuse sync ORM calls.
    access = {user.pk: access_token_for(user) for user in (leader, challenger)}
    for user, increment in ((leader, 500), (challenger, 100)):
        response = httpx.post(
            f"{api_server.http}/v1/scores/update",
            json={"action_token": action_token(user, increment)},
            headers={"Authorization": f"Bearer {access[user.pk]}"},
        )
        assert response.status_code == 200, response.text

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 720})
            page.goto(f"{page_server.http}/")
            rows = page.locator("#rows tr")
            expect(rows).to_have_count(2)
            expect(rows.nth(0)).to_contain_text("Leader")
            expect(page.locator("#status")).to_have_attribute("data-state", "live", timeout=WAIT_MS)
            page.evaluate("window.__sameDocument = true")  # survives only if the page is not reloaded

            # The challenger overtakes the leader, through the API of the *other* process.
            response = httpx.post(
                f"{api_server.http}/v1/scores/update",
                json={"action_token": action_token(challenger, 900)},
                headers={"Authorization": f"Bearer {access[challenger.pk]}"},
            )
            assert response.status_code == 200, response.text

            expect(rows.nth(0)).to_contain_text("Challenger", timeout=WAIT_MS)
            expect(rows.nth(0)).to_contain_text("1000")
            expect(rows.nth(1)).to_contain_text("Leader")
            expect(rows.nth(0).locator(".move.up")).to_have_count(1)
            assert page.evaluate("window.__sameDocument") is True
            page.screenshot(path=str(ARTIFACTS / "board-live.png"), full_page=True)

            # Readable on a phone: the table fits the narrow viewport without horizontal scrolling.
            page.set_viewport_size({"width": 375, "height": 700})
            assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
            page.screenshot(path=str(ARTIFACTS / "board-phone.png"), full_page=True)

            # Readable on a TV across the room: the text grows with the screen.
            page.set_viewport_size({"width": 1920, "height": 1080})
            font_px = page.evaluate("parseFloat(getComputedStyle(document.querySelector('#rows td')).fontSize)")
            assert font_px >= 24
            page.screenshot(path=str(ARTIFACTS / "board-tv.png"))
        finally:
            browser.close()


def test_a_weekly_board_page_updates_live_and_ignores_other_boards(servers):
    """/boards/weekly/ subscribes to its own board: a score on it moves the page; the picker links boards."""
    from playwright.sync_api import expect, sync_playwright

    from scores import board_services

    page_server, api_server = servers
    board_services.board_create(
        board_id="weekly", title="This week", period="weekly", action_types=["LEVEL_COMPLETION"]
    )
    board_services.board_create(board_id="speedrun", sort="asc", operator="best", action_types=["LAP_TIME"])
    runner = PlayerFactory.create(username="Runner")
    access = access_token_for(runner)

    def post(increment: int, action_type: str = "LEVEL_COMPLETION") -> None:
        response = httpx.post(
            f"{api_server.http}/v1/scores/update",
            json={"action_token": action_token(runner, increment, action_type=action_type)},
            headers={"Authorization": f"Bearer {access}"},
        )
        assert response.status_code == 200, response.text

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 720})
            page.goto(f"{page_server.http}/boards/weekly/")
            expect(page.locator("h1")).to_contain_text("This week")
            expect(page.locator('nav.boards a[aria-current="page"]')).to_contain_text("This week")
            expect(page.locator("#status")).to_have_attribute("data-state", "live", timeout=WAIT_MS)
            post(1000, "LAP_TIME")  # feeds global and speedrun, not weekly (the page must not show it)
            post(300)
            rows = page.locator("#rows tr")
            expect(rows.nth(0)).to_contain_text("Runner", timeout=WAIT_MS)
            expect(rows.nth(0).locator("td").last).to_have_text("300")  # not 1300: the lap time is not on it
            page.screenshot(path=str(ARTIFACTS / "board-weekly-live.png"), full_page=True)
        finally:
            browser.close()


def test_the_weekly_page_goes_live_over_the_websocket_address_it_is_given(servers, tmp_path):
    """make serve's default: the page (one process) names another address for the WebSocket
    (REALTIME_PUBLIC_URL: the kernel-balanced port); the browser connects there, past its origin
    check, and the page updates live; nothing goes to the page's own origin for the socket."""
    from playwright.sync_api import expect, sync_playwright

    from scores import board_services
    from tests.realtime.servers import asgi_servers

    live_server, api_server = servers
    live_url = f"ws://127.0.0.1:{live_server.port}"
    board_services.board_create(
        board_id="weekly", title="This week", period="weekly", action_types=["LEVEL_COMPLETION"]
    )
    runner = PlayerFactory.create(username="Sprinter")
    access = access_token_for(runner)
    with (
        asgi_servers(1, tmp_path, {"REALTIME_PUBLIC_URL": live_url}) as (page_server,),
        sync_playwright() as playwright,
    ):
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 720})
            sockets: list[str] = []
            page.on("websocket", lambda ws: sockets.append(ws.url))
            page.goto(f"{page_server.http}/boards/weekly/")
            expect(page.locator("#status")).to_have_attribute("data-state", "live", timeout=WAIT_MS)
            response = httpx.post(
                f"{api_server.http}/v1/scores/update",
                json={"action_token": action_token(runner, 400)},
                headers={"Authorization": f"Bearer {access}"},
            )
            assert response.status_code == 200, response.text
            rows = page.locator("#rows tr")
            expect(rows.nth(0)).to_contain_text("Sprinter", timeout=WAIT_MS)
            expect(rows.nth(0).locator("td").last).to_have_text("400")
            assert sockets == [f"{live_url}/v1/realtime"]
        finally:
            browser.close()
