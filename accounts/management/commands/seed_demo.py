"""Demo players with scores, so a fresh board is not empty. Idempotent."""

import datetime as dt
import random
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction
from django.utils import timezone

from accounts.models import User
from scores import services
from scores.models import ScoreHistory

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


class Command(BaseCommand):
    help = "Create demo players with scores (and the 'demo' player used in the README tour)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--players", type=int, default=len(NAMES))
        parser.add_argument("--seed", type=int, default=42)

    @transaction.atomic
    def handle(self, *args: Any, **options: Any) -> None:
        rng = random.Random(options["seed"])
        created = 0
        now = timezone.now()
        if not User.objects.filter(username=DEMO_PLAYER).exists():
            demo = User(username=DEMO_PLAYER, email="demo@example.com")
            demo.set_password(DEMO_PASSWORD)
            demo.save()
            created += 1
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
            ScoreHistory.objects.create(
                user=user,
                score_increment=score,
                old_score=0,
                new_score=score,
                action_type="LEVEL_COMPLETION",
                action_token_hash="seed",
                metadata={"seed": True},
            )
            created += 1
        transaction.on_commit(services.leaderboard_rebuild)
        self.stdout.write(self.style.SUCCESS(f"Seeded {created} players."))
