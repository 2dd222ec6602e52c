from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import IntegrityError

from accounts import services
from accounts.models import GameServerKey


class Command(BaseCommand):
    help = "Create an API key for a game server (POST /v1/actions). The key is printed once, on stdout."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="a unique name for the game server, e.g. arcade-server")

    def handle(self, *args: Any, **options: Any) -> None:
        name = options["name"]
        if GameServerKey.objects.filter(name=name).exists():
            raise CommandError(f"A key named {name!r} already exists; pick another name (keys are shown only once).")
        try:
            _key, raw = services.game_server_key_create(name=name)
        except IntegrityError as exc:  # created concurrently under the same name
            raise CommandError(f"A key named {name!r} already exists.") from exc
        self.stdout.write(raw)
