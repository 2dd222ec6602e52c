"""Migration operations for large tables.

``AddIndexConcurrently`` builds the index with ``CREATE INDEX CONCURRENTLY`` on PostgreSQL, so a
deploy never holds a write lock on ``users``, ``score_history`` or ``fraud_logs`` for the minutes
an index build takes there; on other databases (the embedded SQLite) it is a plain ``AddIndex``.
A migration using it must say ``atomic = False`` (PostgreSQL refuses CONCURRENTLY in a
transaction). tests/reliability/test_migrations.py refuses a plain AddIndex on those tables.
"""

from __future__ import annotations

from typing import Any

from django.contrib.postgres.operations import AddIndexConcurrently as PostgresAddIndexConcurrently
from django.contrib.postgres.operations import RemoveIndexConcurrently as PostgresRemoveIndexConcurrently
from django.db import migrations

# Tables that grow with traffic: an index added to them later must be built concurrently.
LARGE_TABLES = ("users", "score_history", "fraud_logs", "used_nonces")


class _ConcurrentlyOnPostgreSQL:
    """The PostgreSQL operation next in the MRO on PostgreSQL, ``plain`` elsewhere."""

    plain: Any

    def database_forwards(self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any) -> None:
        if schema_editor.connection.vendor == "postgresql":
            super().database_forwards(app_label, schema_editor, from_state, to_state)  # type: ignore[misc]
        else:
            self.plain.database_forwards(self, app_label, schema_editor, from_state, to_state)

    def database_backwards(self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any) -> None:
        if schema_editor.connection.vendor == "postgresql":
            super().database_backwards(app_label, schema_editor, from_state, to_state)  # type: ignore[misc]
        else:
            self.plain.database_backwards(self, app_label, schema_editor, from_state, to_state)


class AddIndexConcurrently(_ConcurrentlyOnPostgreSQL, PostgresAddIndexConcurrently):
    plain = migrations.AddIndex


class RemoveIndexConcurrently(_ConcurrentlyOnPostgreSQL, PostgresRemoveIndexConcurrently):
    plain = migrations.RemoveIndex
