"""All test factories in one place."""

from __future__ import annotations

import factory
from django.contrib.auth.hashers import make_password

from accounts.models import User

PLAYER_PASSWORD = "a-long-test-password-7"
# Hashing once keeps factories fast; every player shares the same password.
_PASSWORD_HASH = make_password(PLAYER_PASSWORD)


class PlayerFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"player{n}")
    email = factory.LazyAttribute(lambda o: f"{o.username}@example.com")
    password = _PASSWORD_HASH

    @factory.post_generation
    def global_entry(obj: User, create: bool, extracted: object, **kwargs: object) -> None:
        """A player created with a score is on the global board, as the score service would leave them."""
        if create and obj.score_reached_at is not None:
            global_entry_sync(obj)


def global_entry_sync(user: User) -> None:
    """Mirror ``users.current_score`` into the player's global board entry (tests that set it directly)."""
    from scores.boards import ALL_TIME_KEY, GLOBAL_ID
    from scores.models import Board, BoardEntry

    Board.objects.get_or_create(id=GLOBAL_ID, defaults={"title": "Global"})
    assert user.score_reached_at is not None
    BoardEntry.objects.update_or_create(
        board_id=GLOBAL_ID,
        period_key=ALL_TIME_KEY,
        user=user,
        defaults={
            "score": user.current_score,
            "sort_value": -user.current_score,
            "reached_at": user.score_reached_at,
            "version": max(user.score_version, 1),
            "updated_at": user.score_reached_at,
        },
    )
