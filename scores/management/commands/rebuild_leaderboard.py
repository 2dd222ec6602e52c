from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from scores import selectors, services


class Command(BaseCommand):
    help = "Rebuild the Redis ranking index of every live board period from PostgreSQL (safe at any time)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--board", help="Only this board (default: every board).")

    def handle(self, *args: Any, **options: Any) -> None:
        board = None
        if options.get("board"):
            board = selectors.board_get(options["board"])
            if board is None:
                raise CommandError(f"No board {options['board']!r}.")
        periods = services.live_periods(board=board)
        total = 0
        for spec, key in periods:
            count = services.index_rebuild(spec=spec, period_key=key)
            total += count
            self.stdout.write(f"{spec.id}/{key}: {count} players")
        self.stdout.write(self.style.SUCCESS(f"Indexed {total} entries on {len(periods)} board periods."))
