"""Fraud logs: what the engine saw, how risky it judged it, and what a moderator decided."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models


class FraudLog(models.Model):
    class Status(models.TextChoices):
        OPEN = "open", "Open"
        CONFIRMED = "confirmed", "Confirmed"
        DISMISSED = "dismissed", "Dismissed"

    class Decision(models.TextChoices):
        FLAGGED = "flagged", "Flagged (applied)"
        QUARANTINED = "quarantined", "Quarantined (applied, hidden from boards)"
        BLOCKED = "blocked", "Blocked (rejected)"
        BATCH = "batch", "Batch scan"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="fraud_logs"
    )
    # The rule that weighed most (or the batch check that found it).
    event_type = models.CharField(max_length=50)
    decision = models.CharField(max_length=16, choices=Decision.choices, default=Decision.FLAGGED)
    risk_score = models.DecimalField(max_digits=3, decimal_places=2)
    # Every rule that fired, comma-delimited on both ends (",rapid_succession,min_play_time,") so one
    # rule can be filtered with a plain LIKE on PostgreSQL and SQLite alike; details are in metadata.
    rules = models.CharField(max_length=300, blank=True, default="")
    metadata = models.JSONField(default=dict, blank=True)
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.TextField(blank=True, default="")
    score_history = models.ForeignKey(
        "scores.ScoreHistory", null=True, blank=True, on_delete=models.SET_NULL, related_name="fraud_logs"
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.OPEN)
    # One incident per burst: the engine's later logs of a player with an open log in the last hour
    # point at the first (the incident); moderators decide an incident once, for all its logs.
    incident = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="members")
    reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    reviewed_at = models.DateTimeField(null=True, blank=True)
    review_note = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "fraud_logs"
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["user", "created_at"], name="idx_fraud_logs_user_time"),
            models.Index(fields=["status", "created_at"], name="idx_fraud_logs_status_time"),
        ]
        permissions = [("moderate_fraudlog", "Can confirm or dismiss fraud logs")]

    def __str__(self) -> str:
        return f"{self.event_type} {self.risk_score} ({self.status})"

    @property
    def rule_names(self) -> list[str]:
        return [r for r in self.rules.split(",") if r]

    @property
    def incident_head_id(self) -> object:
        return self.incident_id or self.pk


class ModerationAction(models.Model):
    """The audit trail of moderation: who decided what about which fraud log, when and why.

    Append-only, like score history. ``moderator_username`` survives the moderator's account.
    """

    class Action(models.TextChoices):
        CONFIRM = "confirm", "Confirmed"
        DISMISS = "dismiss", "Dismissed"
        RELEASE = "release", "Released from quarantine"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    fraud_log = models.ForeignKey(FraudLog, on_delete=models.PROTECT, related_name="moderation_actions")
    action = models.CharField(max_length=16, choices=Action.choices)
    moderator = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="moderation_actions"
    )
    moderator_username = models.CharField(max_length=150)
    reason = models.TextField()
    # What the action did: the player banned, the history rows reversed and the points removed.
    details = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "fraud_moderation_actions"
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.action} by {self.moderator_username}"
