from typing import Any

from django.core.management.base import BaseCommand

from scores import services


class Command(BaseCommand):
    help = "Rebuild the Redis ranking index from PostgreSQL (safe to run at any time)."

    def handle(self, *args: Any, **options: Any) -> None:
        count = services.leaderboard_rebuild()
        self.stdout.write(self.style.SUCCESS(f"Indexed {count} players."))
