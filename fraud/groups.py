"""The "Moderators" group and exactly the permissions moderation needs.

Used by the data migration (with the historical app registry) and safe to run again at any time: it
resets the group's permissions to this list, so a permission added by hand does not linger.
"""

from __future__ import annotations

from typing import Any

from django.apps import apps as global_apps

MODERATORS_GROUP = "Moderators"

# (app label, codename): read the evidence, act on fraud logs, read the audit trail.
MODERATOR_PERMISSIONS: tuple[tuple[str, str], ...] = (
    ("fraud", "view_fraudlog"),
    ("fraud", "moderate_fraudlog"),  # confirm / dismiss; nobody edits a log's fields by hand
    ("fraud", "view_moderationaction"),
    ("scores", "view_scorehistory"),  # history stays read-only for everyone
    ("accounts", "view_user"),  # the player page with score, recent history and fraud logs inline
)


def moderators_group_ensure(*, apps: Any = global_apps) -> Any:
    """Create or update the Moderators group with exactly MODERATOR_PERMISSIONS; returns the group."""
    _permissions_create(apps)
    group_model = apps.get_model("auth", "Group")
    permission_model = apps.get_model("auth", "Permission")
    wanted = set(MODERATOR_PERMISSIONS)
    permissions = [
        p
        for p in permission_model.objects.filter(codename__in={c for _, c in wanted}).select_related("content_type")
        if (p.content_type.app_label, p.codename) in wanted
    ]
    missing = wanted - {(p.content_type.app_label, p.codename) for p in permissions}
    if missing:
        raise RuntimeError(f"permissions missing for the Moderators group: {sorted(missing)}")
    group, _ = group_model.objects.get_or_create(name=MODERATORS_GROUP)
    group.permissions.set(permissions)
    return group


def _permissions_create(apps: Any) -> None:
    """Django creates permissions after all migrations; inside a migration on a fresh database we need
    them now. Idempotent: only missing content types and permissions are created."""
    from django.contrib.auth.management import create_permissions

    for label in sorted({app for app, _ in MODERATOR_PERMISSIONS}):
        create_permissions(global_apps.get_app_config(label), verbosity=0, apps=apps)
