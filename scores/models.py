"""The score ledger: append-only history and the claimed nonces that make action tokens single-use."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models

from scores import boards


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
    # What this change did on each board: [{"board", "period", "old", "new"}] (the global board included).
    boards = models.JSONField(default=list, blank=True)
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


class Board(models.Model):
    """A leaderboard. Operators create and edit boards (admin, manage.py, POST /v1/boards), never code.

    ``sort``, ``operator`` and ``tie_policy`` are fixed once the board has entries. The ``global``
    board always exists; ``users.current_score`` mirrors its score.
    """

    class Sort(models.TextChoices):
        DESC = boards.SORT_DESC, "High score wins"
        ASC = boards.SORT_ASC, "Low score wins (e.g. fastest time)"

    class Operator(models.TextChoices):
        INCR = boards.OP_INCR, "Add the increment"
        BEST = boards.OP_BEST, "Keep the best submission"
        SET = boards.OP_SET, "Keep the latest submission"

    class PeriodKind(models.TextChoices):
        ALL_TIME = boards.ALL_TIME, "All time"
        DAILY = boards.DAILY, "Daily (UTC)"
        WEEKLY = boards.WEEKLY, "Weekly (ISO weeks, Monday 00:00 UTC)"
        MONTHLY = boards.MONTHLY, "Monthly (UTC)"
        CRON = boards.CRON, "Cron schedule (UTC)"

    class TiePolicy(models.TextChoices):
        FIRST_REACHED = boards.TIE_FIRST_REACHED, "Distinct ranks, earlier first"
        DENSE = boards.TIE_DENSE, "Dense (1, 1, 2)"
        COMPETITION = boards.TIE_COMPETITION, "Competition (1, 1, 3)"

    id = models.SlugField(primary_key=True, max_length=boards.BOARD_ID_MAX_LENGTH)
    title = models.CharField(max_length=200, blank=True, default="")
    sort = models.CharField(max_length=4, choices=Sort.choices, default=Sort.DESC)
    operator = models.CharField(max_length=4, choices=Operator.choices, default=Operator.INCR)
    period = models.CharField(max_length=8, choices=PeriodKind.choices, default=PeriodKind.ALL_TIME)
    cron = models.CharField(max_length=100, blank=True, default="", help_text="5-field cron (period = cron).")
    tie_policy = models.CharField(max_length=13, choices=TiePolicy.choices, default=TiePolicy.FIRST_REACHED)
    action_types = models.JSONField(default=list, blank=True, help_text="Action types that feed it; empty = all.")
    keep_periods = models.PositiveIntegerField(
        default=boards.DEFAULT_KEEP_PERIODS, help_text="Closed periods kept; 0 = forever."
    )
    is_active = models.BooleanField(default=True)
    metadata = models.JSONField(default=dict, blank=True)
    starts_at = models.DateTimeField(null=True, blank=True)
    ends_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "boards"
        ordering = ["id"]

    def __str__(self) -> str:
        return self.id


class BoardPeriod(models.Model):
    """One period of a board that received entries: live until closed, then a frozen archive."""

    board = models.ForeignKey(Board, on_delete=models.CASCADE, related_name="periods", db_index=False)
    key = models.CharField(max_length=boards.PERIOD_KEY_MAX_LENGTH)
    starts_at = models.DateTimeField(null=True, blank=True)
    ends_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True, help_text="Standings frozen (final ranks stored).")
    index_dropped_at = models.DateTimeField(null=True, blank=True, help_text="Live Redis index removed.")
    corrected_at = models.DateTimeField(null=True, blank=True, help_text="A moderator changed it after it closed.")
    entry_count = models.PositiveIntegerField(default=0, help_text="Ranked players when it closed.")

    class Meta:
        db_table = "board_periods"
        constraints = [models.UniqueConstraint(fields=["board", "key"], name="uniq_board_periods_board_key")]
        indexes = [
            models.Index(fields=["ends_at"], name="idx_board_periods_open", condition=models.Q(closed_at__isnull=True))
        ]

    def __str__(self) -> str:
        return f"{self.board_id} {self.key}"


class BoardEntry(models.Model):
    """A player's standing on one board in one period. Written in the score transaction.

    ``sort_value`` is the score in the board's order (``-score`` on high-wins boards), so one
    index serves every board: better = smaller sort value, then earlier ``reached_at``, then id.
    ``prev_score``/``prev_reached_at`` hold the values before the latest write: the one-statement
    upsert returns them as the update's old score. ``final_rank`` is set when the period closes.
    """

    id = models.BigAutoField(primary_key=True)
    board = models.ForeignKey(Board, on_delete=models.CASCADE, related_name="entries", db_index=False)
    period_key = models.CharField(max_length=boards.PERIOD_KEY_MAX_LENGTH)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="board_entries")
    score = models.BigIntegerField()
    sort_value = models.BigIntegerField()
    reached_at = models.DateTimeField()
    version = models.BigIntegerField(default=1)
    prev_score = models.BigIntegerField(null=True, blank=True)
    prev_reached_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField()
    final_rank = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        db_table = "board_entries"
        constraints = [
            models.UniqueConstraint(fields=["board", "period_key", "user"], name="uniq_board_entries_player"),
        ]
        indexes = [
            models.Index(
                fields=["board", "period_key", "sort_value", "reached_at", "user"], name="idx_board_entries_order"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.board_id}/{self.period_key} {self.user_id}: {self.score}"
