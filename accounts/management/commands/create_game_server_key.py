from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from accounts import services


class Command(BaseCommand):
    help = "Create an API key for a game server (POST /v1/actions). The key is printed once."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name")

    def handle(self, *args: Any, **options: Any) -> None:
        _key, raw = services.game_server_key_create(name=options["name"])
        self.stdout.write(raw)
