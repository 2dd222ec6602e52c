"""clients/js under Node's test runner, against a real server started here (uvicorn, PostgreSQL,
Redis) that trusts a local OIDC issuer. The Node tests themselves are clients/js/test/*.test.mjs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from django.conf import settings

from accounts import services as account_services
from tests.oidc_issuer import LocalIssuer
from tests.realtime.servers import ROOT, asgi_servers

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.django_db(transaction=True), pytest.mark.slow]

NODE_TIMEOUT_SECONDS = 180


def node() -> str:
    path = shutil.which("node")
    if path is None:
        pytest.fail("node is missing: `make test` installs it (make node, Debian package nodejs)")
    return path


def test_the_js_kit_passes_its_node_tests_against_a_real_server(tmp_path: Path) -> None:
    idp = LocalIssuer(audience="studio-game").start()
    try:
        env = {"OIDC_ISSUERS": json.dumps([idp.config()])}
        with asgi_servers(1, tmp_path, extra_env=env) as (server,):
            run = subprocess.run(
                [node(), "--experimental-websocket", "--test", "--test-reporter=tap", "clients/js/test/"],
                cwd=ROOT,
                env={
                    **os.environ,
                    "SCOREBOARD_URL": server.http,
                    "SCOREBOARD_ACTION_SECRET": settings.ACTION_TOKEN_SECRET,
                    "SCOREBOARD_OIDC_TOKEN": idp.token("js-kit-player", alg="EdDSA", preferred_username="NodeFan"),
                    "SCOREBOARD_API_KEY": account_services.game_server_key_create(name="js-kit")[1],
                },
                capture_output=True,
                text=True,
                timeout=NODE_TIMEOUT_SECONDS,
            )
    finally:
        idp.stop()
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-6000:]
    assert "# fail 0" in output, output[-6000:]
    passed = int(output.split("# pass ")[1].split()[0])
    assert passed >= 14, output[-3000:]
