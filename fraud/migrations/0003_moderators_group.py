"""The "Moderators" group with exactly the permissions moderation needs (fraud/groups.py)."""

from django.db import migrations


def moderators_group_create(apps, schema_editor):
    from fraud.groups import moderators_group_ensure

    moderators_group_ensure(apps=apps)


def moderators_group_delete(apps, schema_editor):
    from fraud.groups import MODERATORS_GROUP

    apps.get_model("auth", "Group").objects.filter(name=MODERATORS_GROUP).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("fraud", "0002_moderation"),
        ("accounts", "0001_initial"),
        ("scores", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(moderators_group_create, moderators_group_delete)]
