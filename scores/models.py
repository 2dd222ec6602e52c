"""The score ledger: append-only history and the claimed nonces that make action tokens single-use."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models


class ScoreHistory(models.Model):
    """One row per change of a player's score. Append-only: corrections are new rows (reversals)."""

    class Kind(models.TextChoices):
        ACTION = "action", "Action"
        REVERSAL = "reversal", "Moderator reversal"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # Indexed through idx_score_history_user_time; a separate FK index would only cost writes.
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="score_history", db_index=False
    )
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.ACTION)
    score_increment = models.IntegerField()
    old_score = models.BigIntegerField()
    new_score = models.BigIntegerField()
    action_type = models.CharField(max_length=50)
    action_id = models.CharField(max_length=128, null=True, blank=True)  # noqa: DJ001 (null: reversals)
    nonce = models.CharField(max_length=256, null=True, blank=True)  # noqa: DJ001 (null = no token)
    action_token_hash = models.CharField(max_length=256)
    action_timestamp = models.DateTimeField(null=True, blank=True)
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.TextField(blank=True, default="")
    metadata = models.JSONField(default=dict, blank=True)
    reverses = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="reversals", db_index=False
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=False)

    class Meta:
        db_table = "score_history"
        verbose_name_plural = "score history"
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["user", "created_at"], name="idx_score_history_user_time")]
        # Constraints rather than unique=True: PostgreSQL then skips the extra LIKE-pattern indexes, and
        # every index is paid on each of the ~1,500 writes/s the service aims for.
        constraints = [
            models.UniqueConstraint(fields=["action_id"], name="uniq_score_history_action_id"),
            models.UniqueConstraint(
                fields=["reverses"], condition=models.Q(reverses__isnull=False), name="uniq_score_history_reverses"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user_id} {self.score_increment:+d} ({self.action_type})"


class UsedNonce(models.Model):
    """A claimed action token. The primary key and the unique action id make replays impossible."""

    nonce = models.CharField(max_length=256, primary_key=True)
    action_id = models.CharField(max_length=128)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+", db_index=False)
    created_at = models.DateTimeField()

    class Meta:
        db_table = "used_nonces"
        indexes = [models.Index(fields=["created_at"], name="idx_used_nonces_time")]
        constraints = [models.UniqueConstraint(fields=["action_id"], name="uniq_used_nonces_action_id")]

    def __str__(self) -> str:
        return self.nonce
