"""Moderation in Django admin: review fraud logs, confirm or dismiss them (with a reason), read the audit.

Display configuration only: the actions call ``fraud.services``. Logs are never edited by hand; the
"moderate" permission (the Moderators group has it) allows the two actions.
"""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.db.models import Count, QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from accounts.models import User
from fraud import rules, selectors, services
from fraud.models import FraudLog, ModerationAction
from scoreboard.admin import ReadOnlyAdminMixin
from scoreboard.errors import ApiError

RISK_BANDS = {
    "high": ("0.80", None, "High (≥ 0.80)"),
    "medium": ("0.50", "0.80", "Medium (0.50-0.79)"),
    "low": (None, "0.50", "Low (< 0.50)"),
}


class RuleFilter(admin.SimpleListFilter):
    title = "rule"
    parameter_name = "rule"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        names = [*rules.RULES, services.VELOCITY_OUTLIER, services.SHARED_IP_CLUSTER]
        return [(name, name.replace("_", " ")) for name in names]

    def queryset(self, request: HttpRequest, queryset: QuerySet[FraudLog]) -> QuerySet[FraudLog]:
        value = self.value()
        if not value:
            return queryset
        return queryset.filter(rules__contains=f",{value},")


class RiskFilter(admin.SimpleListFilter):
    title = "risk"
    parameter_name = "risk"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(key, label) for key, (_, _, label) in RISK_BANDS.items()]

    def queryset(self, request: HttpRequest, queryset: QuerySet[FraudLog]) -> QuerySet[FraudLog]:
        band = RISK_BANDS.get(self.value() or "")
        if band is None:
            return queryset
        low, high, _ = band
        if low is not None:
            queryset = queryset.filter(risk_score__gte=low)
        if high is not None:
            queryset = queryset.filter(risk_score__lt=high)
        return queryset


class IncidentFilter(admin.SimpleListFilter):
    title = "incident"
    parameter_name = "incident"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("one", "One row per incident")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[FraudLog]) -> QuerySet[FraudLog]:
        if self.value() == "one":
            return queryset.filter(incident__isnull=True)
        return queryset


class ReasonForm(forms.Form):
    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3, "cols": 80}),
        max_length=services.REASON_MAX_LENGTH,
        help_text="Why: kept in the audit trail with your name and the time.",
    )


class ModerationActionInline(admin.TabularInline):
    model = ModerationAction
    extra = 0
    can_delete = False
    fields = ("created_at", "action", "moderator_username", "reason", "details")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(FraudLog)
class FraudLogAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    # Logs are written by the engine and closed by the moderation actions below; nobody edits them.
    # Fits 1,280 px: when (to the second, with the zone), who, status, outcome, risk and the rules.
    list_display = ("when", "user", "status", "decision", "risk_score", "rules_fired", "logs")
    list_filter = (
        "status",
        IncidentFilter,
        "decision",
        RuleFilter,
        ("created_at", admin.DateFieldListFilter),
        RiskFilter,
    )
    search_fields = ("user__username", "=user__id", "=ip_address", "event_type", "review_note")
    list_select_related = ("user",)
    date_hierarchy = "created_at"
    ordering = ("-created_at",)
    actions = ["confirm", "dismiss", "release"]
    inlines = [ModerationActionInline]
    fields = (
        "user",
        "status",
        "decision",
        "risk_score",
        "event_type",
        "explanation",
        "incident_logs",
        "score_history",
        "ip_address",
        "user_agent",
        "created_at",
        "reviewed_by",
        "reviewed_at",
        "review_note",
        "raw_metadata",
    )
    readonly_fields = fields
    change_form_template = "admin/fraud/fraudlog/change_form.html"

    def has_moderate_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("fraud.moderate_fraudlog")

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        # Open logs by default: what a moderator has to act on. Any filter or search shows the rest.
        if request.method == "GET" and not request.GET:  # (an action's POST keeps its own selection)
            query = request.GET.copy()
            query["status__exact"] = FraudLog.Status.OPEN
            query["incident"] = "one"
            request.GET = query  # type: ignore[assignment]
        return super().changelist_view(request, extra_context)

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        log = FraudLog.objects.filter(pk=object_id).first()
        # Buttons only for those who may use them, and only while the log is open (no 403 behind a button).
        can_act = log is not None and log.status == FraudLog.Status.OPEN and self.has_moderate_permission(request)
        buttons = []
        if can_act and log is not None:
            buttons = [("confirm", "Confirm (ban, reverse the incident)…"), ("dismiss", "Dismiss…")]
            if log.decision == FraudLog.Decision.QUARANTINED or (log.user is not None and log.user.is_quarantined):
                buttons.append(("release", "Release from quarantine…"))
        context = {
            **(extra_context or {}),
            "moderation_buttons": buttons,
            "action_checkbox_name": ACTION_CHECKBOX_NAME,
        }
        return super().change_view(request, object_id, form_url, context)

    def get_queryset(self, request: HttpRequest) -> QuerySet[FraudLog]:
        return super().get_queryset(request).annotate(member_count=Count("members"))

    @admin.display(description="logs")
    def logs(self, obj: FraudLog) -> int:
        """Logs in the incident this row heads (1 for a log that belongs to another's incident)."""
        return 1 + int(getattr(obj, "member_count", 0))

    @admin.display(description="incident")
    def incident_logs(self, obj: FraudLog) -> str:
        rows = selectors.incident_logs(fraud_log=obj)
        return format_html(
            "<ol>{}</ol>",
            format_html_join(
                "",
                '<li><a href="{}">{}</a> {} {} — {}</li>',
                (
                    (
                        reverse("admin:fraud_fraudlog_change", args=[r.pk]),
                        timezone.localtime(r.created_at).strftime("%H:%M:%S %Z"),
                        r.get_decision_display(),
                        r.risk_score,
                        ", ".join(r.rule_names),
                    )
                    for r in rows
                ),
            ),
        )

    @admin.display(description="when", ordering="created_at")
    def when(self, obj: FraudLog) -> str:
        return timezone.localtime(obj.created_at).strftime("%Y-%m-%d %H:%M:%S %Z")

    @admin.display(description="rules")
    def rules_fired(self, obj: FraudLog) -> str:
        return ", ".join(obj.rule_names)

    @admin.display(description="why")
    def explanation(self, obj: FraudLog) -> str:
        reasons = obj.metadata.get("rules", []) if isinstance(obj.metadata, dict) else []
        if not reasons:
            return "-"
        return format_html(
            "<ul>{}</ul>",
            format_html_join(
                "",
                "<li><b>{}</b> +{} (weight {} × {}): {}</li>",
                (
                    (r.get("rule"), r.get("weighted"), r.get("weight"), r.get("contribution"), r.get("reason"))
                    for r in reasons
                    if isinstance(r, dict)
                ),
            ),
        )

    @admin.display(description="metadata")
    def raw_metadata(self, obj: FraudLog) -> str:
        return format_html("<pre>{}</pre>", json.dumps(obj.metadata, indent=2, sort_keys=True))

    # -----------------------------------------------------------------------------------------
    # Actions: a confirmation page asks for the reason, then the service does the work.
    # -----------------------------------------------------------------------------------------
    @admin.action(description="Confirm: ban the player and reverse the scores in question", permissions=["moderate"])
    def confirm(self, request: HttpRequest, queryset: QuerySet[FraudLog]) -> HttpResponse | None:
        return self._moderate(request, queryset, action="confirm")

    @admin.action(description="Dismiss: a false positive, keep the score", permissions=["moderate"])
    def dismiss(self, request: HttpRequest, queryset: QuerySet[FraudLog]) -> HttpResponse | None:
        return self._moderate(request, queryset, action="dismiss")

    @admin.action(
        description="Release from quarantine: back on the public boards with the score", permissions=["moderate"]
    )
    def release(self, request: HttpRequest, queryset: QuerySet[FraudLog]) -> HttpResponse | None:
        return self._moderate(request, queryset, action="release")

    def _moderate(self, request: HttpRequest, queryset: QuerySet[FraudLog], *, action: str) -> HttpResponse | None:
        open_logs = queryset.filter(status=FraudLog.Status.OPEN).select_related("user")
        form = ReasonForm(request.POST if "apply" in request.POST else None)
        if not form.is_bound or not form.is_valid():
            return TemplateResponse(
                request,
                "admin/fraud/fraudlog/moderate.html",
                {
                    **self.admin_site.each_context(request),
                    "title": {"confirm": "Confirm fraud", "release": "Release from quarantine"}.get(
                        action, "Dismiss fraud logs"
                    ),
                    "previews": [p for p in (selectors.incident_preview(fraud_log=log) for log in open_logs) if p]
                    if action == "confirm"
                    else [],
                    "action": action,
                    "logs": open_logs,
                    "skipped": queryset.count() - open_logs.count(),
                    "form": form,
                    "opts": self.model._meta,
                    "action_checkbox_name": ACTION_CHECKBOX_NAME,
                    "selected": [str(pk) for pk in queryset.values_list("pk", flat=True)],
                },
            )
        moderator = request.user
        assert isinstance(moderator, User)
        moderate = {
            "confirm": services.fraud_log_confirm,
            "release": services.player_release,
        }.get(action, services.fraud_log_dismiss)
        done = 0
        for log in open_logs:
            try:
                moderate(fraud_log=log, moderator=moderator, reason=form.cleaned_data["reason"])
                done += 1
            except ApiError as exc:
                self.message_user(request, f"{log.pk}: {exc.detail}", messages.WARNING)
        verb = {"confirm": "Confirmed", "release": "Released"}.get(action, "Dismissed")
        self.message_user(request, f"{verb} {done} fraud log(s).", messages.SUCCESS)
        return None


@admin.register(ModerationAction)
class ModerationActionAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """The audit trail: read-only for everyone."""

    list_display = ("created_at", "action", "moderator_username", "fraud_log", "reason")
    list_filter = ("action", ("created_at", admin.DateFieldListFilter))
    search_fields = ("moderator_username", "reason", "=fraud_log__id", "fraud_log__user__username")
    list_select_related = ("fraud_log",)
    fields = ("created_at", "action", "moderator", "moderator_username", "fraud_log", "reason", "details")
    readonly_fields = fields
