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
        BLOCKED = "blocked", "Blocked (rejected)"
        BATCH = "batch", "Batch scan"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="fraud_logs"
    )
    event_type = models.CharField(max_length=50)
    decision = models.CharField(max_length=16, choices=Decision.choices, default=Decision.FLAGGED)
    risk_score = models.DecimalField(max_digits=3, decimal_places=2)
    metadata = models.JSONField(default=dict, blank=True)
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.TextField(blank=True, default="")
    score_history = models.ForeignKey(
        "scores.ScoreHistory", null=True, blank=True, on_delete=models.SET_NULL, related_name="fraud_logs"
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.OPEN)
    reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    reviewed_at = models.DateTimeField(null=True, blank=True)
    review_note = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "fraud_logs"
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["user", "created_at"], name="idx_fraud_logs_user_time")]

    def __str__(self) -> str:
        return f"{self.event_type} {self.risk_score} ({self.status})"
