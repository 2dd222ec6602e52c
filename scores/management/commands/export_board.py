import contextlib
import csv
import sys
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from scoreboard.errors import ApiError
from scoreboard.progress import counted, progress
from scores import selectors

CSV_COLUMNS = ("rank", "user_id", "username", "score", "last_updated")  # as GET /v1/boards/{board}/export.csv


class Command(BaseCommand):
    help = "Write every entry of a board's period as CSV (like GET /v1/boards/{board}/export.csv), with progress."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("board")
        parser.add_argument("--period", default="current", help="current (default), previous or a period key.")
        parser.add_argument("--output", "-o", default="-", help="A file (default: standard output).")

    def handle(self, *args: Any, **options: Any) -> None:
        spec = selectors.board_get(options["board"])
        if spec is None:
            raise CommandError(f"No board {options['board']!r}.")
        try:
            period = selectors.period_resolve(spec=spec, value=options["period"])
        except ApiError as exc:
            raise CommandError(str(exc.detail)) from exc
        total = selectors.entry_counts(specs=[spec]).get(spec.id) if options["period"] == "current" else None
        to_file = options["output"] != "-"
        with contextlib.ExitStack() as stack:
            out = stack.enter_context(Path(options["output"]).open("w", newline="")) if to_file else sys.stdout
            writer = csv.writer(out)
            writer.writerow(CSV_COLUMNS)
            written = 0
            desc = f"export {spec.id}/{period.key}"
            # The bar goes to stderr, so a CSV on stdout stays clean.
            with progress(total=total, desc=desc, unit="rows", enabled=options["verbosity"] > 0) as bar:
                for row in counted(selectors.export_rows(spec=spec, period=period), bar):
                    writer.writerow([row.rank, row.user_id, row.username, row.score, row.last_updated])
                    written += 1
        if to_file:
            where = f"{spec.id}/{period.key} written to {options['output']}"
            self.stdout.write(self.style.SUCCESS(f"{written} rows of {where}"))
