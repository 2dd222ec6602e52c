"""scoreboard/db.py: the score-update statements as PostgreSQL prepared statements, inside Django's transactions."""

from __future__ import annotations

import uuid

import pytest
from django.db import IntegrityError, connection, transaction

from accounts.models import User
from accounts.selectors import user_by_id
from scoreboard import db
from scores.models import UsedNonce
from tests.factories import PlayerFactory

# The PostgreSQL run (make test); test_user_by_id_reads_every_field also runs on the embedded default.
pytestmark = pytest.mark.django_db

SELECT_NAME = "SELECT username FROM users WHERE id = %s"


def _prepared_statements() -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        return [row[0] for row in cursor.fetchall()]


def test_the_statement_is_prepared_once_and_answers_like_djangos_cursor() -> None:
    player = PlayerFactory.create(username="prep")
    assert db.fetchone(SELECT_NAME, [player.pk]) == ("prep",)
    assert db.fetchone(SELECT_NAME, [player.pk]) == ("prep",)
    assert db.fetchone(SELECT_NAME, [uuid.uuid4()]) is None
    prepared = [s for s in _prepared_statements() if "FROM users WHERE id = $1" in s]
    assert len(prepared) == 1  # parsed and planned once for this connection, reused since


def test_switched_off_nothing_is_prepared(settings: object) -> None:
    settings.DB_PREPARED_STATEMENTS = False  # type: ignore[attr-defined]
    player = PlayerFactory.create(username="unprep")
    assert db.fetchone(SELECT_NAME, [player.pk]) == ("unprep",)
    assert not [s for s in _prepared_statements() if "FROM users" in s]


def test_errors_are_djangos_and_the_callers_transaction_rolls_back() -> None:
    player = PlayerFactory.create()
    insert = (
        "INSERT INTO used_nonces (nonce, action_id, user_id, created_at) VALUES (%s, %s, %s, now()) RETURNING nonce"
    )
    assert db.fetchone(insert, ["n-1", str(uuid.uuid4()), player.pk]) == ("n-1",)
    # django.db's IntegrityError, which the score service catches for replays.
    with pytest.raises(IntegrityError), transaction.atomic():
        db.fetchone(insert, ["n-2", str(uuid.uuid4()), player.pk])
        db.fetchone(insert, ["n-1", str(uuid.uuid4()), player.pk])  # the nonce again: unique violation
    # The savepoint rolled back both statements of the block; the connection is usable afterwards.
    assert list(UsedNonce.objects.values_list("nonce", flat=True)) == ["n-1"]
    assert db.fetchone(SELECT_NAME, [player.pk]) == (player.username,)


@pytest.mark.embedded
def test_user_by_id_reads_every_field() -> None:
    player = PlayerFactory.create(username="whole")
    found = user_by_id(user_id=str(player.pk))
    assert found is not None
    for field in User._meta.concrete_fields:
        assert getattr(found, field.attname) == getattr(player, field.attname), field.attname
    assert user_by_id(user_id=uuid.uuid4()) is None
    assert user_by_id(user_id="not-a-uuid") is None
