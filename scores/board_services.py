"""Board writes: creating and editing boards, and the life of their periods (close, freeze, drop, prune).

The beat task ``scores.board_periods_maintain`` runs these every minute, so a period closes at its
boundary with no request arriving; Django admin's "close period now" calls the same service.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import models, transaction
from django.utils import timezone

from scoreboard.errors import ApiError, Conflict, NotFound
from scoreboard.redis import REDIS_ERRORS
from scores import registry, services
from scores.boards import (
    BOARD_ID_RE,
    CRON,
    GLOBAL_ID,
    METADATA_MAX_BYTES,
    OPERATORS,
    PERIODS,
    SORTS,
    TIE_POLICIES,
    BoardSpec,
    cron_validate,
)
from scores.models import Board, BoardEntry, BoardPeriod
from scores.ranking import redis_index

logger = logging.getLogger(__name__)

# Fixed once a board has entries: changing them would re-order or re-key what players already hold.
FIXED_WITH_ENTRIES = ("sort", "operator", "tie_policy", "period", "cron")
# The SPEC's board: users.current_score mirrors it, so it stays an all-time, additive, high-wins board
# (its action types may be narrowed, e.g. to keep lap times out of the points).
GLOBAL_FIXED = (*FIXED_WITH_ENTRIES, "starts_at", "ends_at", "is_active")
EDITABLE = (
    "title",
    "sort",
    "operator",
    "period",
    "cron",
    "tie_policy",
    "action_types",
    "keep_periods",
    "is_active",
    "metadata",
    "starts_at",
    "ends_at",
)
# A period is closed this long after its boundary, so a write that computed its period just before
# the boundary has committed before the standings freeze.
CLOSE_GRACE_SECONDS = 10


def _invalid(message: str, field: str) -> ApiError:
    return ApiError(message, code="invalid_board", details={"field": field})


def _validate(values: dict[str, Any]) -> None:
    """Field rules for a board (the API serializer checks types; this checks meaning)."""
    if values.get("sort") not in SORTS:
        raise _invalid(f"sort must be one of {', '.join(SORTS)}.", "sort")
    if values.get("operator") not in OPERATORS:
        raise _invalid(f"operator must be one of {', '.join(OPERATORS)}.", "operator")
    if values.get("tie_policy") not in TIE_POLICIES:
        raise _invalid(f"tie_policy must be one of {', '.join(TIE_POLICIES)}.", "tie_policy")
    if values.get("period") not in PERIODS:
        raise _invalid(f"period must be one of {', '.join(PERIODS)}.", "period")
    cron = values.get("cron") or ""
    if values["period"] == CRON:
        try:
            cron_validate(cron)
        except ValueError as exc:
            raise _invalid(f"cron is not a valid 5-field cron string: {exc}", "cron") from exc
    elif cron:
        raise _invalid("cron is only for boards with period 'cron'.", "cron")
    unknown = sorted(set(values.get("action_types") or ()) - set(settings.ACTION_TYPES))
    if unknown:
        raise _invalid(f"unknown action types: {', '.join(unknown)}.", "action_types")
    metadata = values.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise _invalid("metadata must be a JSON object.", "metadata")
    if len(json.dumps(metadata).encode()) > METADATA_MAX_BYTES:
        raise _invalid(f"metadata must be at most {METADATA_MAX_BYTES} bytes of JSON.", "metadata")
    if int(values.get("keep_periods", 0)) < 0:
        raise _invalid("keep_periods must be 0 (forever) or more.", "keep_periods")
    starts, ends = values.get("starts_at"), values.get("ends_at")
    if starts and ends and starts >= ends:
        raise _invalid("starts_at must be before ends_at.", "ends_at")


def _defaults() -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in EDITABLE:
        field = Board._meta.get_field(name)
        assert isinstance(field, models.Field)
        out[name] = field.get_default()
    return out


def board_validate(*, board_id: str, **fields: Any) -> dict[str, Any]:
    """The values a new board would have, or the ApiError that creating it would raise."""
    if not BOARD_ID_RE.match(board_id or ""):
        raise _invalid("id must be a slug: lowercase letters, digits, '-' and '_', at most 64.", "id")
    values = {**_defaults(), **fields}
    _validate(values)
    if Board.objects.filter(pk=board_id).exists():
        raise Conflict(f"A board {board_id!r} already exists.", code="board_exists")
    return values


@transaction.atomic
def board_create(*, board_id: str, **fields: Any) -> Board:
    """Create a board (409 when the id is taken). Unknown fields are a programming error."""
    values = board_validate(board_id=board_id, **fields)
    board = Board.objects.create(id=board_id, **values)
    transaction.on_commit(registry.boards_cache_clear)
    return board


def board_validate_update(*, board_id: str, **fields: Any) -> dict[str, Any]:
    """The fields an edit would change, or the ApiError that the edit would raise."""
    board = Board.objects.filter(pk=board_id).first()
    if board is None:
        raise NotFound(f"No board {board_id!r}.", code="unknown_board")
    return _changes(board, fields)


def _changes(board: Board, fields: dict[str, Any]) -> dict[str, Any]:
    board_id = board.pk
    changed = {k: v for k, v in fields.items() if getattr(board, k) != v}
    if board_id == GLOBAL_ID:
        fixed = sorted(set(changed) & set(GLOBAL_FIXED))
        if fixed:
            raise Conflict(
                f"The global board's {', '.join(fixed)} cannot change.", code="board_fixed", details={"fields": fixed}
            )
    fixed = sorted(set(changed) & set(FIXED_WITH_ENTRIES))
    if fixed and BoardEntry.objects.filter(board_id=board_id).exists():
        raise Conflict(
            f"{', '.join(fixed)} cannot change once the board has entries.",
            code="board_has_entries",
            details={"fields": fixed},
        )
    values = {f: getattr(board, f) for f in EDITABLE} | changed
    _validate(values)
    return changed


@transaction.atomic
def board_update(*, board_id: str, **fields: Any) -> Board:
    """Edit a board. ``sort``, ``operator``, ``tie_policy`` and the period are fixed once it has entries."""
    board = Board.objects.select_for_update().filter(pk=board_id).first()
    if board is None:
        raise NotFound(f"No board {board_id!r}.", code="unknown_board")
    changed = _changes(board, fields)
    for key, value in changed.items():
        setattr(board, key, value)
    board.save()
    transaction.on_commit(registry.boards_cache_clear)
    return board


# ---------------------------------------------------------------------------------------------
# Periods
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PeriodsReport:
    closed: int
    indexes_dropped: int
    archives_pruned: int


def period_close(*, spec: BoardSpec, period_key: str) -> int:
    """Freeze a period's final standings now (admin "close period now"); returns players ranked."""
    ranked = services.period_freeze(spec=spec, period_key=period_key)
    logger.info("closed period %s/%s with %d ranked players", spec.id, period_key, ranked)
    return ranked


def periods_close_due(*, now: dt.datetime | None = None, board: BoardSpec | None = None) -> int:
    """Close every period (of ``board``, or of every board) whose boundary has passed (plus the
    grace). Returns how many closed."""
    now = now or timezone.now()
    due = BoardPeriod.objects.filter(
        closed_at__isnull=True, ends_at__lte=now - dt.timedelta(seconds=CLOSE_GRACE_SECONDS)
    )
    if board is not None:
        due = due.filter(board_id=board.id)
    closed = 0
    for period in due.order_by("ends_at"):
        spec = registry.board_get(period.board_id)
        if spec is None:
            continue
        period_close(spec=spec, period_key=period.key)
        closed += 1
    return closed


def closed_indexes_drop(*, now: dt.datetime | None = None) -> int:
    """Drop the live Redis index of closed periods one period after they ended (the grace)."""
    now = now or timezone.now()
    dropped = 0
    for period in BoardPeriod.objects.filter(closed_at__isnull=False, index_dropped_at__isnull=True):
        if period.ends_at is None or period.starts_at is None:
            continue
        if period.ends_at + (period.ends_at - period.starts_at) > now:
            continue
        spec = registry.board_get(period.board_id)
        index = redis_index(spec, period.key) if spec is not None else None
        if index is not None:
            try:
                index.drop()
            except REDIS_ERRORS:
                logger.warning("redis unavailable; index of %s/%s dropped later", period.board_id, period.key)
                continue
        period.index_dropped_at = now
        period.save(update_fields=["index_dropped_at"])
        dropped += 1
    return dropped


def archives_prune() -> int:
    """Delete the closed periods beyond each board's ``keep_periods`` (0 keeps every one)."""
    pruned = 0
    for spec in registry.boards_all():
        if spec.keep_periods == 0:
            continue
        closed = BoardPeriod.objects.filter(board_id=spec.id, closed_at__isnull=False).order_by("-ends_at")
        for period in closed[spec.keep_periods :]:
            with transaction.atomic():
                BoardEntry.objects.filter(board_id=spec.id, period_key=period.key).delete()
                period.delete()
            pruned += 1
    if pruned:
        services.known_periods_clear()
    return pruned


def board_periods_maintain(*, now: dt.datetime | None = None) -> PeriodsReport:
    """The beat task's work: close due periods, drop expired live indexes, prune old archives."""
    now = now or timezone.now()
    return PeriodsReport(
        closed=periods_close_due(now=now),
        indexes_dropped=closed_indexes_drop(now=now),
        archives_pruned=archives_prune(),
    )
