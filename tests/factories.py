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

    username = factory.Sequence(lambda n: f"player{n}")
    email = factory.LazyAttribute(lambda o: f"{o.username}@example.com")
    password = _PASSWORD_HASH
