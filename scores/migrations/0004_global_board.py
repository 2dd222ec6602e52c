"""The SPEC's board as a row, and its entries from users.current_score (existing deployments)."""

from django.db import migrations

BACKFILL = """
INSERT INTO board_entries (board_id, period_key, user_id, score, sort_value, reached_at, version, updated_at)
SELECT 'global', 'all', id, current_score, -current_score, score_reached_at, score_version, score_reached_at
  FROM users WHERE score_reached_at IS NOT NULL
"""


def create_global(apps, schema_editor):
    Board = apps.get_model("scores", "Board")
    Board.objects.get_or_create(id="global", defaults={"title": "Global"})
    schema_editor.execute(BACKFILL)


def drop_global(apps, schema_editor):
    apps.get_model("scores", "BoardEntry").objects.filter(board_id="global").delete()


class Migration(migrations.Migration):
    dependencies = [("scores", "0003_boards")]

    operations = [migrations.RunPython(create_global, drop_global)]
