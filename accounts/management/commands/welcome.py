"""Printed by `make run`: where the board is and how to submit a score."""

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from accounts.management.commands.seed_demo import DEMO_PASSWORD, DEMO_PLAYER


class Command(BaseCommand):
    help = "Print the URL, the demo player's credentials and a first score submission."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--port", default="8000")

    def handle(self, *args: Any, **options: Any) -> None:
        base = f"http://127.0.0.1:{options['port']}"
        db = "PostgreSQL" if settings.IS_POSTGRES else "SQLite (embedded default)"
        redis = "Redis" if settings.REDIS_URL else "in-memory (no Redis)"
        lines = [
            "",
            f"  Scoreboard is starting on {base}/   (database: {db}; cache/layers: {redis})",
            f"  API docs:  {base}/v1/docs/",
            f"  Demo player: {DEMO_PLAYER} / {DEMO_PASSWORD}",
            "",
            "  Submit a score (in another terminal):",
            f"    ACCESS=$(curl -s -X POST {base}/v1/auth/login -H 'Content-Type: application/json' \\",
            f'      -d \'{{"username": "{DEMO_PLAYER}", "password": "{DEMO_PASSWORD}"}}\' | python3 -c \'import json,sys; print(json.load(sys.stdin)["data"]["access"])\')',  # noqa: E501
            f"    TOKEN=$(.venv/bin/python manage.py mint_action_token {DEMO_PLAYER} --increment 500)",
            f'    curl -s -X POST {base}/v1/scores/update -H "Authorization: Bearer $ACCESS" \\',
            '      -H \'Content-Type: application/json\' -d "{\\"action_token\\": \\"$TOKEN\\"}"',
            "",
        ]
        if settings.USING_DEV_SECRETS:
            lines.append(
                f"  WARNING: using development secrets for {', '.join(settings.USING_DEV_SECRETS)};"
                " set them in the environment for production."
            )
            lines.append("")
        self.stdout.write("\n".join(lines))
