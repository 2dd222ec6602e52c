"""The process's copy of the boards table, as immutable specs (boards change rarely; reads are hot).

Other apps reach it through ``scores.selectors``. Board services clear this process's copy at once
after a create or edit; other processes follow within ``settings.BOARDS_CACHE_SECONDS``.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Iterable
from typing import Any

from django.conf import settings

from scores.boards import GLOBAL_ID, GLOBAL_SPEC, BoardSpec
from scores.models import Board


def spec_from_row(row: Any) -> BoardSpec:
    return BoardSpec(
        id=row.id,
        title=row.title,
        sort=row.sort,
        operator=row.operator,
        period=row.period,
        cron=row.cron or "",
        tie_policy=row.tie_policy,
        action_types=frozenset(row.action_types or ()),
        keep_periods=row.keep_periods,
        is_active=row.is_active,
        starts_at=row.starts_at,
        ends_at=row.ends_at,
        metadata=dict(row.metadata or {}),
    )


class _Registry:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loaded_at = -1e18
        self._by_id: dict[str, BoardSpec] = {}

    def clear(self) -> None:
        with self._lock:
            self._loaded_at = -1e18

    @staticmethod
    def _load() -> dict[str, BoardSpec]:
        rows = {row.id: spec_from_row(row) for row in Board.objects.all()}
        if GLOBAL_ID not in rows:
            # The migration creates it; a flushed test database (or a deleted row) must not lose
            # the SPEC's board, whose score users.current_score mirrors.
            row, _ = Board.objects.get_or_create(id=GLOBAL_ID, defaults={"title": GLOBAL_SPEC.title})
            rows[GLOBAL_ID] = spec_from_row(row)
        return rows

    def all(self) -> dict[str, BoardSpec]:
        now = time.monotonic()
        ttl = settings.BOARDS_CACHE_SECONDS
        if ttl <= 0 or now - self._loaded_at > ttl:
            loaded = self._load()
            with self._lock:
                self._by_id, self._loaded_at = loaded, now
        return self._by_id


_registry = _Registry()


def boards_cache_clear() -> None:
    """Forget this process's copy of the boards table (after a board was created or edited)."""
    _registry.clear()


def board_get(board_id: str) -> BoardSpec | None:
    """The board with this id (active or not), or None."""
    return _registry.all().get(board_id)


def boards_all() -> list[BoardSpec]:
    """Every board, ``global`` first, then by id."""
    return sorted(_registry.all().values(), key=lambda s: (s.id != GLOBAL_ID, s.id))


def boards_active() -> list[BoardSpec]:
    return [spec for spec in boards_all() if spec.is_active]


def boards_fed(*, action_type: str, at: dt.datetime, specs: Iterable[BoardSpec] | None = None) -> list[BoardSpec]:
    """Every active board that takes this action at this instant, ``global`` first."""
    return [s for s in (boards_active() if specs is None else specs) if s.accepts(action_type=action_type, at=at)]
