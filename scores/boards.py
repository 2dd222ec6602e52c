"""Boards as the rest of the code sees them: a frozen spec, its periods, and its one ordering rule.

A board is a row in PostgreSQL (``scores.models.Board``); this module turns rows into immutable
:class:`BoardSpec` values that services, selectors, the Redis index and the live layer pass
around. It knows nothing about Redis or HTTP.

**The ordering rule** (one place, used by every reader and the index): the better score first —
higher for ``desc`` boards, lower for ``asc`` boards — then the earliest time the player reached
that score, then the user id. Internally a score becomes its *sort value* (``-score`` on ``desc``
boards, ``score`` on ``asc`` boards), so "better" is always "smaller sort value" in PostgreSQL and
"bigger zset score" (``-sort value``) in Redis. Tie policies only change the rank *numbers*:
``first_reached`` numbers rows 1, 2, 3 …; ``competition`` gives equal scores the rank of the first
of them (1, 1, 3); ``dense`` counts distinct better scores (1, 1, 2).

**Periods** are computed from the clock at write time, on UTC boundaries, so a write that arrives
after a boundary lands in the new period even before the beat task closed the old one.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from cronsim import CronSim, CronSimError

GLOBAL_ID = "global"

SORT_DESC, SORT_ASC = "desc", "asc"
SORTS = (SORT_DESC, SORT_ASC)
OP_INCR, OP_BEST, OP_SET = "incr", "best", "set"
OPERATORS = (OP_INCR, OP_BEST, OP_SET)
TIE_FIRST_REACHED, TIE_DENSE, TIE_COMPETITION = "first_reached", "dense", "competition"
TIE_POLICIES = (TIE_FIRST_REACHED, TIE_DENSE, TIE_COMPETITION)
ALL_TIME, DAILY, WEEKLY, MONTHLY, CRON = "all_time", "daily", "weekly", "monthly", "cron"
PERIODS = (ALL_TIME, DAILY, WEEKLY, MONTHLY, CRON)
ALL_TIME_KEY = "all"
PERIOD_CURRENT, PERIOD_PREVIOUS = "current", "previous"
BOARD_ID_MAX_LENGTH = 64
BOARD_ID_RE = re.compile(r"^[a-z0-9](?:[a-z0-9_-]{0,63})$")
PERIOD_KEY_MAX_LENGTH = 40
METADATA_MAX_BYTES = 4096
DEFAULT_KEEP_PERIODS = 52

_CRON_KEY_FORMAT = "%Y-%m-%dT%H:%MZ"


class PeriodError(ValueError):
    """A period key that does not belong to the board."""


@dataclass(frozen=True)
class Period:
    """One period of one board: ``key`` is stable and readable (``2026-W49``)."""

    key: str
    starts_at: dt.datetime | None  # None: all time
    ends_at: dt.datetime | None  # None: never ends

    def contains(self, at: dt.datetime) -> bool:
        return (self.starts_at is None or self.starts_at <= at) and (self.ends_at is None or at < self.ends_at)

    def ended(self, at: dt.datetime) -> bool:
        """Over at ``at``: only such a period can be closed or corrected."""
        return self.ends_at is not None and self.ends_at <= at

    @property
    def length(self) -> dt.timedelta | None:
        if self.starts_at is None or self.ends_at is None:
            return None
        return self.ends_at - self.starts_at


def _utc(value: dt.datetime) -> dt.datetime:
    return value.astimezone(dt.UTC) if value.tzinfo else value.replace(tzinfo=dt.UTC)


def _midnight(day: dt.date) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)


def _month_start(year: int, month: int) -> dt.datetime:
    return dt.datetime(year, month, 1, tzinfo=dt.UTC)


def _next_month(start: dt.datetime) -> dt.datetime:
    return _month_start(start.year + (start.month == 12), start.month % 12 + 1)


def cron_validate(expression: str) -> None:
    """Raise ValueError unless ``expression`` is a 5-field cron string."""
    if len(expression.split()) != 5:
        raise ValueError("cron must have 5 fields (minute hour day month weekday)")
    try:
        CronSim(expression, dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    except CronSimError as exc:
        raise ValueError(str(exc)) from exc


# (period kind, cron) -> the period BoardSpec.period_at computed last for it (per process).
_LAST_PERIOD: dict[tuple[str, str], Period] = {}


@dataclass(frozen=True)
class BoardSpec:
    """An immutable board, as every layer passes it around. Build with :func:`spec_from_row`."""

    id: str
    title: str = ""
    sort: str = SORT_DESC
    operator: str = OP_INCR
    period: str = ALL_TIME
    cron: str = ""
    tie_policy: str = TIE_FIRST_REACHED
    action_types: frozenset[str] = frozenset()
    keep_periods: int = DEFAULT_KEEP_PERIODS
    is_active: bool = True
    starts_at: dt.datetime | None = None
    ends_at: dt.datetime | None = None
    metadata: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    # -- the ordering rule ------------------------------------------------------------------------
    def sort_value(self, score: int) -> int:
        """Smaller is better, for every board (PostgreSQL orders by it ascending)."""
        return -score if self.sort == SORT_DESC else score

    def zscore(self, score: int) -> int:
        """The Redis zset score: bigger is better (the index walks it with ZREVRANGE)."""
        return -self.sort_value(score)

    def score_from_zscore(self, zscore: float) -> int:
        value = int(zscore)
        return value if self.sort == SORT_DESC else -value

    def better(self, a: int, b: int) -> bool:
        """Is score ``a`` strictly better than score ``b`` on this board?"""
        return self.sort_value(a) < self.sort_value(b)

    def combine(self, stored: int | None, submitted: int) -> int:
        """The score after applying ``submitted`` with this board's operator (mirrors the SQL)."""
        if stored is None:
            return submitted
        if self.operator == OP_INCR:
            return stored + submitted
        if self.operator == OP_SET:
            return submitted
        return submitted if self.better(submitted, stored) else stored

    # -- which writes it takes --------------------------------------------------------------------
    def accepts(self, *, action_type: str, at: dt.datetime) -> bool:
        if not self.is_active:
            return False
        if self.action_types and action_type not in self.action_types:
            return False
        if self.starts_at is not None and at < self.starts_at:
            return False
        return not (self.ends_at is not None and at >= self.ends_at)

    # -- periods ----------------------------------------------------------------------------------
    @property
    def is_periodic(self) -> bool:
        return self.period != ALL_TIME

    def period_at(self, at: dt.datetime) -> Period:
        """The period that contains the instant ``at`` (UTC boundaries)."""
        at = _utc(at)
        if self.period == ALL_TIME:
            return Period(ALL_TIME_KEY, None, None)
        # Periods depend on the kind (and cron) only, and partition time: the last one computed for
        # that kind answers every instant inside it (each update asks for each board it feeds).
        kind = (self.period, self.cron)
        last = _LAST_PERIOD.get(kind)
        if last is not None and last.contains(at):
            return last
        period = self._period_containing(at)
        _LAST_PERIOD[kind] = period
        return period

    def _period_containing(self, at: dt.datetime) -> Period:
        if self.period == DAILY:
            start = _midnight(at.date())
            return Period(start.strftime("%Y-%m-%d"), start, start + dt.timedelta(days=1))
        if self.period == WEEKLY:
            monday = at.date() - dt.timedelta(days=at.weekday())
            start = _midnight(monday)
            year, week, _ = monday.isocalendar()
            return Period(f"{year}-W{week:02d}", start, start + dt.timedelta(days=7))
        if self.period == MONTHLY:
            start = _month_start(at.year, at.month)
            return Period(start.strftime("%Y-%m"), start, _next_month(start))
        # cron: the period runs from the latest fire time at or before ``at`` to the next one.
        floor = at.replace(second=0, microsecond=0)
        start = next(iter(CronSim(self.cron, floor + dt.timedelta(minutes=1), reverse=True)))
        if start > at:  # CronSim's reverse iteration starts strictly before its anchor
            start = next(iter(CronSim(self.cron, start, reverse=True)))
        end = next(iter(CronSim(self.cron, start)))
        start, end = _utc(start), _utc(end)
        return Period(start.strftime(_CRON_KEY_FORMAT), start, end)

    def period_before(self, period: Period) -> Period | None:
        if period.starts_at is None:
            return None
        return self.period_at(period.starts_at - dt.timedelta(microseconds=1))

    def period_by_key(self, key: str) -> Period:
        """The period named ``key`` (raises PeriodError for a key of another kind or a bad date)."""
        try:
            if self.period == ALL_TIME:
                if key != ALL_TIME_KEY:
                    raise PeriodError(key)
                return Period(ALL_TIME_KEY, None, None)
            if self.period == DAILY:
                at = dt.datetime.strptime(key, "%Y-%m-%d").replace(tzinfo=dt.UTC)
            elif self.period == WEEKLY:
                match = re.fullmatch(r"(\d{4})-W(\d{2})", key)
                if not match:
                    raise PeriodError(key)
                at = _midnight(dt.date.fromisocalendar(int(match[1]), int(match[2]), 1))
            elif self.period == MONTHLY:
                at = dt.datetime.strptime(key, "%Y-%m").replace(tzinfo=dt.UTC)
            else:
                at = dt.datetime.strptime(key, _CRON_KEY_FORMAT).replace(tzinfo=dt.UTC)
        except ValueError as exc:
            raise PeriodError(key) from exc
        period = self.period_at(at)
        if period.key != key:  # e.g. a cron key that is not a fire time
            raise PeriodError(key)
        return period

    def resolve_period(self, value: str | None, *, now: dt.datetime) -> Period:
        """``current`` (default), ``previous`` or a key → the period (PeriodError otherwise)."""
        current = self.period_at(now)
        if value in (None, "", PERIOD_CURRENT):
            return current
        if value == PERIOD_PREVIOUS:
            previous = self.period_before(current)
            if previous is None:
                raise PeriodError(value)
            return previous
        return self.period_by_key(value)


# ---------------------------------------------------------------------------------------------
# Rank numbers under a tie policy (one implementation for Redis pages, database pages, exports)
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RankStart:
    """Where a run of rows (best first) begins: enough to number every row under any tie policy.

    ``position``: 0-based position of the first row in the board. ``better``: how many players
    have a strictly better score than it. ``better_distinct``: how many distinct better scores.
    """

    position: int
    better: int
    better_distinct: int


def rank_numbers(spec: BoardSpec, scores: Sequence[int], start: RankStart) -> list[int]:
    """Rank numbers for consecutive rows with these scores (best first), under the tie policy."""
    ranks: list[int] = []
    previous: int | None = None
    rank = 0
    for i, score in enumerate(scores):
        if spec.tie_policy == TIE_FIRST_REACHED:
            rank = start.position + i + 1
        elif i == 0:
            rank = (start.better if spec.tie_policy == TIE_COMPETITION else start.better_distinct) + 1
        elif score != previous:
            rank = start.position + i + 1 if spec.tie_policy == TIE_COMPETITION else rank + 1
        ranks.append(rank)
        previous = score
    return ranks


GLOBAL_SPEC = BoardSpec(id=GLOBAL_ID, title="Global")
