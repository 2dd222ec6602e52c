"""The studio walk-through of issue #16, end to end on one real server: a player of the studio's own
(local) OIDC issuer submits a score through the Python kit, and it arrives through the JS kit in
Node (clients/js/examples/watch.mjs) and on the spectator page in Chromium."""

from __future__ import annotations

import json
import queue
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from scoreboard_client import Scoreboard, mint_action_token

from accounts import services as account_services
from tests.clients.test_js_kit import node
from tests.oidc_issuer import LocalIssuer
from tests.realtime.servers import ROOT, asgi_servers
from tests.realtime.test_browser import CHROMIUM, CHROMIUM_ARGS, WAIT_MS

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.redis,
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
]

WAIT_SECONDS = 15


def _lines(process: subprocess.Popen[str], into: queue.Queue[dict[str, Any]]) -> None:
    assert process.stdout is not None
    for line in process.stdout:
        if line.startswith("{"):
            into.put(json.loads(line))


def _until(lines: queue.Queue[dict[str, Any]], seen: list[dict[str, Any]], match: Any) -> dict[str, Any]:
    """The first line, printed so far or from now on, that matches (lines may come in any order)."""
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        found = next((line for line in seen if match(line)), None)
        if found is not None:
            return found
        try:
            seen.append(lines.get(timeout=max(0.1, deadline - time.monotonic())))
        except queue.Empty:
            raise AssertionError(f"the Node watcher did not print the expected line; it printed {seen}") from None


def test_an_oidc_player_scores_through_the_python_kit_and_node_and_the_page_see_it(tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs it (Debian package chromium)")
    api_key = account_services.game_server_key_create(name="walkthrough")[1]
    idp = LocalIssuer(audience="studio-game").start()
    try:
        with asgi_servers(1, tmp_path, extra_env={"OIDC_ISSUERS": json.dumps([idp.config()])}) as (server,):
            access = idp.token("auth0|5f7c", alg="ES256", preferred_username="Studio Player")
            watcher = subprocess.Popen(
                [node(), "--experimental-websocket", "clients/js/examples/watch.mjs", server.http, "global", access],
                cwd=ROOT,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            lines: queue.Queue[dict[str, Any]] = queue.Queue()
            seen: list[dict[str, Any]] = []
            threading.Thread(target=_lines, args=(watcher, lines), daemon=True).start()
            try:
                _until(lines, seen, lambda line: line["kind"] == "snapshot")
                with sync_playwright() as playwright:
                    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                    try:
                        page = browser.new_page()
                        page.goto(f"{server.http}/")
                        expect(page.locator("#status")).to_have_attribute("data-state", "live", timeout=WAIT_MS)

                        game_server = Scoreboard(server.http, api_key=api_key)
                        me = game_server.me(access_token=access)
                        assert me.issuer == idp.issuer and me.username == "Studio_Player"
                        token = mint_action_token(
                            settings.ACTION_TOKEN_SECRET,
                            user_id=me.user_id,
                            action_type="LEVEL_COMPLETION",
                            score_increment=777,
                        )
                        assert game_server.submit_score(token, access_token=access).new_score == 777

                        snapshot = _until(
                            lines,
                            seen,
                            lambda line: (
                                line["kind"] == "snapshot"
                                and any(row["user_id"] == me.user_id for row in line["leaderboard"])
                            ),
                        )
                        assert snapshot["leaderboard"][0]["score"] == 777
                        rank = _until(lines, seen, lambda line: line["kind"] == "rank")
                        assert (rank["user_id"], rank["rank"], rank["score"]) == (me.user_id, 1, 777)
                        expect(page.locator("#rows tr").nth(0)).to_contain_text("Studio_Player", timeout=WAIT_MS)
                        expect(page.locator("#rows tr").nth(0)).to_contain_text("777")
                    finally:
                        browser.close()
            finally:
                watcher.terminate()
                watcher.wait(timeout=10)
    finally:
        idp.stop()
