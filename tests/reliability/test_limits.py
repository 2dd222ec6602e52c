"""Addresses and socket limits: the per-IP budget covers WebSocket handshakes, and every deployment
file trusts forwarded headers only from its proxy and caps inbound frames at 4 KB in uvicorn."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from channels.testing import WebsocketCommunicator
from django.test import override_settings

from scoreboard import ratelimit
from scoreboard.asgi import application

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "deploy"))
import serve  # noqa: E402


@pytest.fixture(autouse=True)
def _fresh_counters() -> None:
    ratelimit.local_counters.reset()
    ratelimit.breaker.reset()


async def handshake(address: str, forwarded_for: str | None = None) -> bool:
    headers = [(b"x-forwarded-for", forwarded_for.encode())] if forwarded_for else []
    communicator = WebsocketCommunicator(application, "/v1/realtime", headers=headers)
    communicator.scope["client"] = (address, 50000)
    connected, _ = await communicator.connect()
    await communicator.disconnect()
    return bool(connected)


@pytest.mark.embedded
@pytest.mark.django_db(transaction=True)
@override_settings(RATE_LIMIT_WS_HANDSHAKES_PER_MINUTE=3, TRUSTED_PROXIES=["10.0.0.1"])
async def test_websocket_handshakes_count_against_their_address() -> None:
    assert [await handshake("198.51.100.1") for _ in range(4)] == [True, True, True, False]
    # Another address has its own budget; a forged X-Forwarded-For from an untrusted peer buys nothing.
    assert await handshake("198.51.100.2") is True
    assert await handshake("198.51.100.1", forwarded_for="203.0.113.9") is False
    # Behind the trusted proxy, the address the proxy appended is the one counted.
    assert [await handshake("10.0.0.1", forwarded_for="203.0.113.7") for _ in range(4)] == [True, True, True, False]


def _args_of(command: list[str] | str) -> list[str]:
    return command if isinstance(command, list) else command.split()


def _uvicorn_commands() -> dict[str, list[str]]:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    k8s = yaml.safe_load((ROOT / "deploy" / "k8s" / "realtime.yaml").read_text().split("\n---")[0])
    plan = serve.plan_from_env({"PORT": "8490", "STATE_DIR": "/tmp/unused"})
    served = [cmd for name, cmd in serve.commands(plan, Path("/dev/null")) if name.startswith("asgi")]
    return {
        "compose": _args_of(compose["services"]["realtime"]["command"]),
        "k8s": k8s["spec"]["template"]["spec"]["containers"][0]["args"],
        **{f"serve-{i}": cmd for i, cmd in enumerate(served)},
    }


def _flag(args: list[str], name: str) -> str | None:
    for i, arg in enumerate(args):
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
        if arg == name:
            return args[i + 1]
    return None


@pytest.mark.embedded
def test_uvicorn_trusts_only_the_proxy_and_caps_frames_everywhere(monkeypatch: Any) -> None:
    monkeypatch.setattr(serve, "nginx_binary", lambda: "nginx")
    commands = _uvicorn_commands()
    assert set(commands) >= {"compose", "k8s", "serve-0", "serve-1"}
    trusted = {name: _flag(args, "--forwarded-allow-ips") for name, args in commands.items()}
    assert trusted == {
        "compose": "172.28.0.10",  # nginx's fixed address on the compose network
        "k8s": "$(TRUSTED_PROXIES)",  # the ingress controller's network, from the ConfigMap
        "serve-0": "127.0.0.1",
        "serve-1": "127.0.0.1",
    }
    assert {name: _flag(args, "--ws-max-size") for name, args in commands.items()} == dict.fromkeys(commands, "4096")
    for text in (ROOT / "docker-compose.yml", *sorted((ROOT / "deploy").rglob("*.yaml"))):
        assert "forwarded-allow-ips=*" not in text.read_text(), text


@pytest.mark.embedded
def test_nginx_limits_connections_and_rates_per_address_on_every_public_location() -> None:
    site = serve.render_site(listen="80", wsgi=["w:1"], asgi=["a:2"], access_log="off")
    for head, zone in (
        ("location /v1/realtime {", "scoreboard_ws"),
        ("location /v1/leaderboard/stream {", "scoreboard_ws"),
        ("location / {", "scoreboard_api"),
    ):
        block = site.split(head, 1)[1].split("}", 1)[0]
        assert f"limit_req zone={zone} " in block, head
        assert "limit_conn scoreboard_conn " in block, head
    assert "limit_req_status 429;" in site and "error_page 429 = @scoreboard_too_many;" in site
    assert "127.0.0.1 1;" not in site  # nobody is exempt unless asked
    exempt = serve.render_site(listen="80", wsgi=["w:1"], asgi=["a:2"], access_log="off", limit_exempt=("127.0.0.1",))
    assert "    127.0.0.1 1;" in exempt
