from django.contrib import admin

from scoreboard.admin import ReadOnlyAdminMixin
from scores.models import ScoreHistory


@admin.register(ScoreHistory)
class ScoreHistoryAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
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
