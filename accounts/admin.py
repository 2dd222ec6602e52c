from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.forms import AdminPasswordChangeForm, AdminUserCreationForm, UserChangeForm
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.forms import ModelForm
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from rest_framework.exceptions import APIException

from accounts import services
from accounts.models import AccountDeletion, ExternalIdentity, GameServerKey, User
from fraud import selectors as fraud_selectors
from fraud.models import FraudLog
from scoreboard import erasure
from scoreboard.admin import ReadOnlyAdminMixin
from scores.models import ScoreHistory

RECENT_ROWS_ON_PLAYER_PAGE = 20


class _RecentRowsInline(ReadOnlyAdminMixin, admin.TabularInline):
    """Read-only rows of the player, newest first, only the last RECENT_ROWS_ON_PLAYER_PAGE."""

    extra = 0
    can_delete = False
    show_change_link = True

    def get_formset(self, request: HttpRequest, obj: Any = None, **kwargs: Any) -> Any:
        self._player = obj  # inline instances are per request; get_queryset below runs after this
        return super().get_formset(request, obj, **kwargs)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        rows = super().get_queryset(request)
        player = getattr(self, "_player", None)
        if player is None:
            return rows.none()
        recent = list(
            rows.filter(user=player).order_by("-created_at").values_list("pk", flat=True)[:RECENT_ROWS_ON_PLAYER_PAGE]
        )
        return rows.filter(pk__in=recent).order_by("-created_at")


class ScoreHistoryInline(_RecentRowsInline):
    model = ScoreHistory
    fk_name = "user"
    verbose_name_plural = f"score history (last {RECENT_ROWS_ON_PLAYER_PAGE})"
    fields = ("created_at", "kind", "action_type", "score_increment", "old_score", "new_score", "ip_address")
    readonly_fields = fields


class FraudLogInline(_RecentRowsInline):
    model = FraudLog
    fk_name = "user"
    verbose_name_plural = f"fraud logs (last {RECENT_ROWS_ON_PLAYER_PAGE})"
    fields = ("created_at", "decision", "event_type", "risk_score", "status")
    readonly_fields = fields


class ExternalIdentityInline(ReadOnlyAdminMixin, admin.TabularInline):
    """Which identity provider's subject this player is (OIDC): a moderator can tell who it is."""

    model = ExternalIdentity
    extra = 0
    can_delete = False
    verbose_name_plural = "external identities (OIDC)"
    fields = ("issuer", "subject", "created_at")
    readonly_fields = fields


class PlayerPasswordChangeForm(AdminPasswordChangeForm):
    """Writes only the password column: Django's form does a full save, which could write back a
    score loaded before the player's latest updates."""

    def save(self, commit: bool = True) -> Any:
        user = self.set_password_and_save(self.user, commit=False)  # type: ignore[attr-defined]  # not in stubs
        if commit:
            # set_password raised the token epoch: the player's sessions end with the old password.
            user.save(update_fields=["password", "token_epoch", "sessions_revoked_at"])
        return user


class PlayerCreationForm(AdminUserCreationForm):
    """ "Add user" with the email the model requires (unique, case-insensitive). Django's form has
    no email field, so every player added by hand got "" and the second one was a 500 (IntegrityError)."""

    email = forms.EmailField(max_length=254, required=True)

    class Meta(AdminUserCreationForm.Meta):
        model = User
        fields = ("username", "email")

    def clean_email(self) -> str:
        email = User.objects.normalize_email(self.cleaned_data["email"])
        if User.objects.filter(email__iexact=email).exists():
            raise ValidationError("A player with that email address already exists.", code="unique")
        return email


class PlayerChangeForm(UserChangeForm):
    """The change form says which field is taken (the case-insensitive constraints would otherwise
    only be reported as "Constraint ... is violated" for the whole form)."""

    class Meta(UserChangeForm.Meta):
        model = User

    def _taken(self, field: str) -> Any:
        value = self.cleaned_data.get(field)
        if value and User.objects.filter(**{f"{field}__iexact": value}).exclude(pk=self.instance.pk).exists():
            raise ValidationError(f"A player with that {field} already exists.", code="unique")
        return value

    def clean_email(self) -> Any:
        return self._taken("email")

    def clean_username(self) -> Any:
        return self._taken("username")


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    form = PlayerChangeForm
    add_form = PlayerCreationForm
    add_fieldsets = (
        (None, {"classes": ("wide",), "fields": ("username", "email", "usable_password", "password1", "password2")}),
    )
    change_password_form = PlayerPasswordChangeForm
    # the player page: score, external identity, recent history, fraud logs
    inlines = (ExternalIdentityInline, ScoreHistoryInline, FraudLogInline)
    list_display = ("username", "email", "current_score", "score_reached_at", "is_active", "date_joined")
    list_filter = ("is_active", "is_staff")
    search_fields = ("username", "email", "id")
    ordering = ("-current_score",)
    readonly_fields = (
        "id", "current_score", "score_reached_at", "score_version", "updated_at", "is_quarantined", "moderation",
    )  # fmt: skip
    fieldsets = (
        *(DjangoUserAdmin.fieldsets or ()),
        ("Score", {"fields": ("id", "current_score", "score_reached_at", "score_version", "updated_at")}),
        ("Moderation", {"fields": ("is_quarantined", "moderation")}),
    )

    @admin.display(description="last decision")
    def moderation(self, obj: User) -> str:
        """Who banned (or released) the player, when and why, with a link to the incident."""
        decision = fraud_selectors.player_last_decision(user_id=str(obj.pk)) if obj.pk else None
        if decision is None:
            return "-"
        verb = "Banned" if decision.action == "confirm" else "Released"
        return format_html(
            '{} by <b>{}</b> on {}: “{}” — <a href="{}">incident</a>',
            verb,
            decision.moderator_username,
            timezone.localtime(decision.created_at).strftime("%Y-%m-%d %H:%M:%S %Z"),
            decision.reason,
            reverse("admin:fraud_fraudlog_change", args=[decision.fraud_log_id]),
        )

    actions = ["delete_personal_data"]

    @admin.action(description="Erase selected players (GDPR: anonymise, off every board, audited)")
    def delete_personal_data(self, request: HttpRequest, queryset: QuerySet[User]) -> None:
        requested_by = getattr(request.user, "username", "") or "admin"
        erased = 0
        for player in list(queryset):
            try:
                erasure.player_delete(
                    user_id=str(player.pk), requested_by=requested_by, reason="erasure requested (admin)"
                )
            except APIException as exc:  # already erased: said on the page, never a 500
                self.message_user(request, f"{player}: {exc.detail}", messages.WARNING)
            else:
                erased += 1
        self.message_user(request, f"Erased {erased} player(s); the audit is under Account deletions.")

    def get_inlines(self, request: HttpRequest, obj: Any = None) -> Any:
        return self.inlines if obj is not None else ()  # a player being added has no history yet

    def save_model(self, request: HttpRequest, obj: Any, form: ModelForm, change: bool) -> None:
        if not change:
            super().save_model(request, obj, form, change)
            return
        # Write only what the moderator changed: a full save would write back the score the form
        # loaded and silently undo updates the player made while the page was open.
        concrete = {f.name for f in User._meta.concrete_fields}
        changed = [name for name in form.changed_data if name in concrete and name != "is_active"]
        if changed:
            obj.save(update_fields=changed)
        if "is_active" in form.changed_data:
            # A ban or unban by hand goes through the moderation service: audited like every other
            # moderator action, sessions revoked on a ban, boards and live pages follow at once.
            from fraud import services as fraud_services

            assert isinstance(request.user, User)
            fraud_services.player_standing_set(
                user_id=str(obj.pk),
                active=bool(obj.is_active),
                moderator=request.user,
                reason=f"{'unbanned' if obj.is_active else 'banned'} on the player page in the admin",
            )


@admin.register(GameServerKey)
class GameServerKeyAdmin(admin.ModelAdmin):
    """Keys are generated by the service; the raw key is shown once, right after creation."""

    list_display = ("name", "prefix", "is_active", "created_at", "last_used_at", "revoked_at")
    fields = ("name", "prefix", "is_active", "created_at", "last_used_at", "revoked_at")
    readonly_fields = ("prefix", "is_active", "created_at", "last_used_at", "revoked_at")
    actions = ["revoke"]

    def save_model(self, request: HttpRequest, obj: GameServerKey, form: ModelForm, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        key, raw = services.game_server_key_create(name=obj.name)
        obj.pk, obj.prefix, obj.key_hash = key.pk, key.prefix, key.key_hash
        self.message_user(
            request, f"API key for {key.name} (copy it now; it is not shown again): {raw}", messages.WARNING
        )

    @admin.action(description="Revoke selected keys")
    def revoke(self, request: HttpRequest, queryset: QuerySet[GameServerKey]) -> None:
        for key in queryset:
            services.game_server_key_revoke(key=key)
        self.message_user(request, f"Revoked {queryset.count()} key(s).")

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return (*self.readonly_fields, "name") if obj else self.readonly_fields


@admin.register(AccountDeletion)
class AccountDeletionAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """The audit of erased players (append-only)."""

    list_display = ("created_at", "user_id", "requested_by", "reason")
    search_fields = ("user_id", "requested_by")
