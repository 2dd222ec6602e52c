from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from scores.models import ScoreHistory


@admin.register(ScoreHistory)
class ScoreHistoryAdmin(admin.ModelAdmin):
    """Read-only: history is append-only; corrections are reversal rows made by moderation."""

    list_display = (
        "created_at",
        "user",
        "kind",
        "action_type",
        "score_increment",
        "old_score",
        "new_score",
        "ip_address",
    )
    list_filter = ("kind", "action_type")
    search_fields = ("user__username", "action_id", "ip_address")
    list_select_related = ("user",)
    date_hierarchy = "created_at"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
