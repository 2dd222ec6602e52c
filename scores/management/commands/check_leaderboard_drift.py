from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from scoreboard.progress import progress
from scores import selectors, services


class Command(BaseCommand):
    help = (
        "Compare each board's Redis index with PostgreSQL player by player and repair what differs "
        "(what the periodic Celery task does), with progress per board."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--board", help="Only this board (default: every active board).")
        parser.add_argument("--no-repair", action="store_true", help="Report the drift, change nothing.")

    def handle(self, *args: Any, **options: Any) -> None:
        if options.get("board"):
            spec = selectors.board_get(options["board"])
            if spec is None:
                raise CommandError(f"No board {options['board']!r}.")
            boards = [spec]
        else:
            boards = list(selectors.boards_active())
        drifted = 0
        enabled = options["verbosity"] > 0
        with progress(total=len(boards), desc="drift check", unit="boards", enabled=enabled) as bar:
            for spec in boards:
                report = services.leaderboard_drift_check(board=spec, repair=not options["no_repair"])
                bar.update()
                if report.missing or report.stale or report.extra:
                    drifted += 1
                self.stdout.write(
                    f"{spec.id}: checked {report.checked}, missing {report.missing}, stale {report.stale}, "
                    f"extra {report.extra}{', repaired' if report.repaired else ''}"
                )
        summary = f"{len(boards)} boards checked, {drifted} with drift."
        self.stdout.write(self.style.WARNING(summary) if drifted else self.style.SUCCESS(summary))
