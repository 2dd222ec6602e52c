"""Indexes added to large tables after their creation are built concurrently (no write lock during
a deploy): scoreboard.migration_ops.AddIndexConcurrently, which is a plain AddIndex on SQLite."""

from __future__ import annotations

import pytest
from django.apps import apps
from django.db import connection, migrations, models
from django.db.migrations.loader import MigrationLoader
from django.db.migrations.operations.models import CreateModel

from scoreboard.migration_ops import LARGE_TABLES, AddIndexConcurrently, RemoveIndexConcurrently

pytestmark = pytest.mark.embedded

# Applied everywhere before this rule existed (the table was new and small then); rewriting an
# applied migration changes nothing for the databases that ran it.
GRANDFATHERED = {("fraud", "0002_moderation")}


def _table(app_label: str, model_name: str) -> str:
    return str(apps.get_model(app_label, model_name)._meta.db_table)


def test_no_plain_add_index_on_a_large_table_after_its_creation() -> None:
    loader = MigrationLoader(None, ignore_no_migrations=True)
    offenders = []
    for (app_label, name), migration in loader.disk_migrations.items():
        created = {op.name.lower() for op in migration.operations if isinstance(op, CreateModel)}
        for op in migration.operations:
            if isinstance(op, AddIndexConcurrently | RemoveIndexConcurrently):
                assert migration.atomic is False, f"{app_label}.{name}: concurrent index operations need atomic = False"
                continue
            if not isinstance(op, migrations.AddIndex | migrations.RemoveIndex):
                continue
            if op.model_name.lower() in created or (app_label, name) in GRANDFATHERED:
                continue
            if _table(app_label, op.model_name) in LARGE_TABLES:
                offenders.append(f"{app_label}.{name}: {type(op).__name__} on {op.model_name}")
    assert not offenders, (
        "use scoreboard.migration_ops.AddIndexConcurrently/RemoveIndexConcurrently (atomic = False): "
        + "; ".join(offenders)
    )


def _index_names(table: str) -> set[str]:
    with connection.cursor() as cursor:
        return set(connection.introspection.get_constraints(cursor, table))


@pytest.mark.django_db(transaction=True)
def test_the_operation_builds_and_drops_the_index_on_this_database() -> None:
    loader = MigrationLoader(connection)
    before = loader.project_state()
    index = models.Index(fields=["last_login"], name="idx_users_test_concurrent")
    add = AddIndexConcurrently("user", index)
    after = before.clone()
    add.state_forwards("accounts", after)
    with connection.schema_editor(atomic=False) as editor:
        add.database_forwards("accounts", editor, before, after)
    try:
        assert "idx_users_test_concurrent" in _index_names("users")
    finally:
        with connection.schema_editor(atomic=False) as editor:
            add.database_backwards("accounts", editor, after, before)
    assert "idx_users_test_concurrent" not in _index_names("users")
