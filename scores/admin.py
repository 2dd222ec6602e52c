from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

from scoreboard.admin import ReadOnlyAdminMixin
from scoreboard.errors import ApiError
from scores import board_services, registry
from scores.boards import GLOBAL_ID
from scores.models import Board, BoardPeriod, ScoreHistory


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


class BoardForm(forms.ModelForm):
    """Board rules (the same as POST/PATCH /v1/boards) checked in the form: a bad cron or a sort
    change on a board with entries is a message on the field, never a 500."""

    class Meta:
        model = Board
        fields = ("id", *board_services.EDITABLE)

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        fields = {k: v for k, v in data.items() if k in board_services.EDITABLE}
        try:
            if self.instance._state.adding:
                board_services.board_validate(board_id=data.get("id", ""), **fields)
            else:
                board_services.board_validate_update(board_id=self.instance.pk, **fields)
        except ApiError as exc:
            field = (exc.details or {}).get("field") if isinstance(exc.details, dict) else None
            fixed = (exc.details or {}).get("fields") if isinstance(exc.details, dict) else None
            if fixed:
                for name in fixed:
                    self.add_error(name, str(exc.detail))
            else:
                self.add_error(field if field in self.fields else None, str(exc.detail))
        return data


@admin.register(Board)
class BoardAdmin(admin.ModelAdmin):
    """Operators create and edit boards here (or with POST/PATCH /v1/boards and a game-server key)."""

    form = BoardForm
    list_display = ("id", "title", "sort", "operator", "period", "tie_policy", "is_active", "current_period")
    list_filter = ("period", "sort", "operator", "is_active")
    search_fields = ("id", "title")
    actions = ["close_ended_periods"]

    @admin.display(description="current period")
    def current_period(self, obj: Board) -> str:
        spec = registry.board_get(obj.id)
        return spec.period_at(timezone.now()).key if spec else "—"

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return ("id",) if obj else ()

    def save_model(self, request: HttpRequest, obj: Board, form: forms.ModelForm, change: bool) -> None:
        fields = {k: form.cleaned_data[k] for k in board_services.EDITABLE if k in form.cleaned_data}
        if change:
            board_services.board_update(board_id=obj.pk, **fields)
        else:
            board_services.board_create(board_id=obj.pk, **fields)
        registry.boards_cache_clear()

    def delete_model(self, request: HttpRequest, obj: Board) -> None:
        if obj.pk == GLOBAL_ID:
            self.message_user(request, "The global board cannot be deleted.", messages.ERROR)
            return
        super().delete_model(request, obj)
        registry.boards_cache_clear()

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return obj is None or obj.pk != GLOBAL_ID

    @admin.action(description="Close ended periods now (freeze their final standings)")
    def close_ended_periods(self, request: HttpRequest, queryset: QuerySet[Board]) -> None:
        """What the beat task does every 30 s, now, for these boards: the period that just ended
        (and any other ended period still open) gets its final ranks."""
        closed = 0
        for board in queryset:
            spec = registry.board_get(board.pk)
            if spec is None or not spec.is_periodic:
                continue
            closed += board_services.periods_close_due(board=spec)
        self.message_user(request, f"Closed {closed} period(s) with final standings.")


@admin.register(BoardPeriod)
class BoardPeriodAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Each board's periods: live or closed (an archive), and whether a moderator corrected it."""

    list_display = ("board", "key", "starts_at", "ends_at", "closed_at", "entry_count", "corrected_at")
    list_filter = ("board",)
    ordering = ("board", "-starts_at")
