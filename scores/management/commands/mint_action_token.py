from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.models import User
from scoreboard.errors import ApiError
from scores import services


class Command(BaseCommand):
    help = "Mint a signed, single-use action token for a player (operators and local testing)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("player", help="username or user id")
        parser.add_argument("--increment", type=int, default=100)
        parser.add_argument("--action-type", default="LEVEL_COMPLETION")

    def handle(self, *args: Any, **options: Any) -> None:
        player = options["player"]
        user = User.objects.filter(username__iexact=player).first()
        if user is None:
            try:
                user = User.objects.filter(pk=player).first()
            except Exception:  # not a UUID
                user = None
        if user is None:
            raise CommandError(f"No player {player!r}.")
        try:
            minted = services.action_token_mint(
                user_id=str(user.pk), action_type=options["action_type"], score_increment=options["increment"]
            )
        except ApiError as exc:
            raise CommandError(str(exc.detail)) from exc
        self.stdout.write(minted.action_token)
