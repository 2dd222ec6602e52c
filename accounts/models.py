"""Players and the game servers that mint action tokens for them."""

from __future__ import annotations

import uuid
from typing import Any, ClassVar

from django.conf import settings
from django.contrib.auth.models import AbstractUser, UserManager
from django.db import models
from django.db.models.functions import Lower
from django.dispatch import Signal
from django.utils import timezone

# Sent with ``ids`` after a queryset update of players' rows (which sends no ``post_save``): their
# cards in Redis are dropped (accounts.cards; connected in accounts.apps).
players_updated = Signal()


class PlayerQuerySet(models.QuerySet["User"]):
    """``update()`` also sends ``players_updated``: a ban, a quarantine or "sign out everywhere" done
    as a queryset update drops the players' cards too."""

    def update(self, **kwargs: Any) -> int:
        if not settings.REDIS_URL:  # no Redis, no cards (the embedded default)
            return super().update(**kwargs)
        ids = list(self.values_list("pk", flat=True))
        count = super().update(**kwargs)
        players_updated.send(sender=User, ids=ids)
        return count


class PlayerManager(UserManager.from_queryset(PlayerQuerySet)):  # type: ignore[misc]
    pass


class User(AbstractUser):
    """A player. ``current_score`` is the all-time global score (the SPEC's users.current_score).

    ``score_reached_at`` is when the player reached ``current_score``: the tie-breaker of the one
    ordering rule (score desc, then earliest time reached, then id). It is null until the first
    score, and players with no score are not on the board. ``score_version`` grows by one on every
    change of the score, so the Redis index can ignore stale writes that arrive out of order.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    email = models.EmailField("email address", unique=True)
    current_score = models.BigIntegerField(default=0)
    score_reached_at = models.DateTimeField(null=True, blank=True)
    score_version = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)
    # Sessions: every token carries the epoch it was issued under ("epoch" claim); raising it (a
    # password change, a ban, "sign out everywhere") revokes every token issued before. Checked on
    # every authenticated request from the row authentication reads anyway: no extra round trip.
    token_epoch = models.PositiveIntegerField(default=0)
    # When the epoch was last raised. Tokens of external identity providers (accounts/oidc.py) cannot
    # carry our epoch: those issued (iat) at or before this instant are refused instead.
    sessions_revoked_at = models.DateTimeField(null=True, blank=True)
    # Quarantined (shadow-banned): scores are applied, but the player is left out of every public
    # read of every board until a moderator releases or confirms; their own reads still show them.
    is_quarantined = models.BooleanField(default=False, db_default=False)

    objects: ClassVar[PlayerManager] = PlayerManager()

    class Meta:
        db_table = "users"
        indexes = [
            models.Index(models.F("current_score").desc(), "score_reached_at", "id", name="idx_users_score"),
        ]
        constraints = [
            models.UniqueConstraint(Lower("username"), name="uniq_users_username_ci"),
            models.UniqueConstraint(Lower("email"), name="uniq_users_email_ci"),
        ]

    def __str__(self) -> str:
        return self.username

    def set_password(self, raw_password: str | None) -> None:
        """A new password signs the player out everywhere (saved with the password)."""
        super().set_password(raw_password)
        if not self._state.adding:
            self.token_epoch += 1
            self.sessions_revoked_at = timezone.now()


class GameServerKey(models.Model):
    """A trusted game server's credential for POST /v1/actions. Only a hash of the key is stored."""

    name = models.CharField(max_length=100, unique=True)
    prefix = models.CharField(max_length=12, unique=True, help_text="Public prefix that identifies the key.")
    key_hash = models.CharField(max_length=128)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "game_server_keys"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"


class ExternalIdentity(models.Model):
    """A player who signs in with a studio's identity provider (OIDC), keyed by (issuer, subject).

    The pair, never the subject alone, names the player, so two issuers' subjects cannot collide;
    the player keeps our own UUID as ``user_id`` everywhere else.
    """

    issuer = models.CharField(max_length=255)
    subject = models.CharField(max_length=255)
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="external_identities")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "external_identities"
        constraints = [models.UniqueConstraint("issuer", "subject", name="uniq_external_identity")]

    def __str__(self) -> str:
        return f"{self.subject} @ {self.issuer}"


class AccountDeletion(models.Model):
    """Audit of a player deleted on request (GDPR erasure): who asked, why, what was anonymised.

    The player's row stays (anonymised, disabled) because history rows point at it; this record
    keeps only the player's id, never their name or email.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user_id = models.UUIDField(db_index=True)
    requested_by = models.CharField(max_length=150)
    reason = models.TextField()
    details = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "account_deletions"
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"deletion of {self.user_id} ({self.created_at:%Y-%m-%d})"
