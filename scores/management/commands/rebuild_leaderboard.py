from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from scoreboard.progress import progress
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
            # A bar per index (players read from PostgreSQL) on a terminal, plain lines in logs.
            bar_on = options["verbosity"] > 0
            with progress(total=None, desc=f"rebuild {spec.id}/{key}", unit="players", enabled=bar_on) as bar:
                count = services.index_rebuild(spec=spec, period_key=key, progress=bar)
            total += count
            self.stdout.write(f"{spec.id}/{key}: {count} players")
        self.stdout.write(self.style.SUCCESS(f"Indexed {total} entries on {len(periods)} board periods."))
