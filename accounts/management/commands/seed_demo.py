"""Demo players with scores on a few boards (and yesterday's and last week's archives), so a fresh
service is not empty and around-me, periods and archives work at once. Idempotent."""

import datetime as dt
import random
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction
from django.utils import timezone

from accounts.models import User
from scores import board_services, registry, services
from scores.boards import GLOBAL_ID, BoardSpec
from scores.models import Board, BoardEntry, ScoreHistory

DEMO_PASSWORD = "demo-password-1"
DEMO_PLAYER = "demo"
NAMES = [
    "PlayerOne",
    "NeonFox",
    "PixelPirate",
    "LagSlayer",
    "QuietStorm",
    "ByteKnight",
    "Comet",
    "Nova",
    "Glitch",
    "Marmalade",
    "Tinker",
    "Orbit",
    "Sprocket",
    "Wisp",
    "Juniper",
    "Falcon",
    "Echo",
    "Quasar",
    "Mango",
    "Rune",
    "Vortex",
    "Pebble",
    "Zephyr",
    "Kestrel",
    "Drift",
    "Saffron",
    "Ember",
    "Cobalt",
    "Lumen",
    "Basil",
]


# The demo's boards: points all time (global), today, this week, and a fastest-lap board (low wins).
DEMO_BOARDS: list[dict[str, Any]] = [
    {
        "board_id": "daily",
        "title": "Today",
        "period": "daily",
        "action_types": ["LEVEL_COMPLETION", "ACHIEVEMENT_UNLOCK"],
    },
    {
        "board_id": "weekly",
        "title": "This week",
        "period": "weekly",
        "action_types": ["LEVEL_COMPLETION", "ACHIEVEMENT_UNLOCK"],
    },
    {
        "board_id": "fastest-lap",
        "title": "Fastest lap",
        "sort": "asc",
        "operator": "best",
        "action_types": ["LAP_TIME"],
        "metadata": {"unit": "ms"},
    },
]
POINT_TYPES = ["LEVEL_COMPLETION", "ACHIEVEMENT_UNLOCK"]


class Command(BaseCommand):
    help = "Create demo boards and players with scores (and the 'demo' player used in the README tour)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--players", type=int, default=len(NAMES))
        parser.add_argument("--seed", type=int, default=42)

    def _boards(self) -> None:
        global_board = Board.objects.get_or_create(id=GLOBAL_ID, defaults={"title": "Global"})[0]
        if not global_board.action_types:  # keep lap times out of the points
            board_services.board_update(board_id=GLOBAL_ID, title="All time", action_types=POINT_TYPES)
        for fields in DEMO_BOARDS:
            if not Board.objects.filter(pk=fields["board_id"]).exists():
                board_services.board_create(**fields)
        registry.boards_cache_clear()

    @staticmethod
    def _entry(spec: BoardSpec, key: str, user: User, score: int, at: dt.datetime) -> BoardEntry:
        return BoardEntry(
            board_id=spec.id,
            period_key=key,
            user=user,
            score=score,
            sort_value=spec.sort_value(score),
            reached_at=at,
            version=1,
            updated_at=at,
        )

    @transaction.atomic
    def handle(self, *args: Any, **options: Any) -> None:
        rng = random.Random(options["seed"])
        self._boards()
        specs = {s.id: s for s in registry.boards_all()}
        created = 0
        now = timezone.now()
        if not User.objects.filter(username=DEMO_PLAYER).exists():
            demo = User(username=DEMO_PLAYER, email="demo@example.com")
            demo.set_password(DEMO_PASSWORD)
            demo.save()
            created += 1
        entries: list[BoardEntry] = []
        archived: set[tuple[str, str]] = set()
        for i in range(options["players"]):
            name = NAMES[i % len(NAMES)] + ("" if i < len(NAMES) else str(i))
            if User.objects.filter(username=name).exists():
                continue
            score = int(rng.paretovariate(1.2) * 400)
            reached = now - dt.timedelta(minutes=rng.randint(1, 600))
            user = User(
                username=name,
                email=f"{name.lower()}@example.com",
                current_score=score,
                score_reached_at=reached,
                score_version=1,
            )
            user.set_unusable_password()
            user.save()
            fed = [{"board": GLOBAL_ID, "period": "all", "old": None, "new": score}]
            entries.append(self._entry(specs[GLOBAL_ID], "all", user, score, reached))
            for board_id in ("daily", "weekly"):
                spec = specs[board_id]
                current = spec.period_at(now)
                previous = spec.period_before(current)
                assert current.starts_at is not None and previous is not None and previous.starts_at is not None
                today = max(1, score // rng.randint(2, 6))
                at = max(current.starts_at, reached)
                entries.append(self._entry(spec, current.key, user, today, at))
                earlier = previous.starts_at + dt.timedelta(minutes=rng.randint(1, 1400))
                entries.append(self._entry(spec, previous.key, user, int(rng.paretovariate(1.3) * 150), earlier))
                fed.append({"board": board_id, "period": current.key, "old": None, "new": today})
                archived.add((board_id, previous.key))
            lap = rng.randint(52_000, 75_000)
            entries.append(self._entry(specs["fastest-lap"], "all", user, lap, reached))
            ScoreHistory.objects.create(
                user=user,
                score_increment=score,
                old_score=0,
                new_score=score,
                action_type="LEVEL_COMPLETION",
                action_token_hash="seed",
                metadata={"seed": True},
                boards=fed,
            )
            created += 1
        BoardEntry.objects.bulk_create(entries, ignore_conflicts=True)
        for board_id, key in sorted(archived):
            services.period_freeze(spec=specs[board_id], period_key=key)  # yesterday and last week: archives
        transaction.on_commit(services.leaderboard_rebuild)
        self.stdout.write(self.style.SUCCESS(f"Seeded {created} players on {len(specs)} boards."))
