"""How the population scores: a bounded, decayed histogram of increments per action type.

The rules ask "how unusual is this increment among players?" as an upper-tail share: the fraction
of players' increments of that action type at or above it. The sketch behind it is a fixed-size
histogram per action type (``BUCKETS`` equal-width buckets over the type's increment range, plus one
for exactly the maximum), so memory never grows with traffic. The batch job (``fraud.batch_scan``)
refreshes it from ``score_history``: it decays the stored counts by ``DECAY`` and adds the last
window's applied actions of players in good standing (not blocked in the window, not banned or
quarantined), at most ``PER_PLAYER_SAMPLES`` per player so no farm can move it much. The sketch lives
in the Django cache (Redis in production, local memory in the embedded default) and can always be
rebuilt from PostgreSQL; each process keeps a copy for ``MEMO_SECONDS``, so the score path reads
nothing extra.

Until a type has ``MIN_SAMPLES`` increments the prior stands in: increments spread evenly over
the type's range (all that configuration says about how humans score).
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import threading
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db.models import Exists, OuterRef

from fraud.models import FraudLog
from scoreboard.redis import REDIS_ERRORS
from scores.models import ScoreHistory

logger = logging.getLogger(__name__)

CACHE_KEY = "fraud:population:v1"
CACHE_TTL_SECONDS = 7 * 24 * 3600
BUCKETS = 40
DECAY = 0.5
MIN_SAMPLES = 200
PER_PLAYER_SAMPLES = 50
TAIL_FLOOR = 0.005
OUTLIER_MEAN_SURPRISE = 2.5  # mean -ln(tail) above which a player is left out (humans ~1, a farm ~5)
MEMO_SECONDS = 60.0


@dataclass(frozen=True)
class Sketch:
    """Counts of increments: ``BUCKETS`` equal-width buckets over [low, high), then one for ``high``."""

    low: int
    high: int
    counts: tuple[float, ...]

    def __post_init__(self) -> None:
        # suffix[i] = mass of buckets i.. (one pass here, so a tail is O(1) on the score path)
        suffix = [0.0] * (len(self.counts) + 1)
        for i in range(len(self.counts) - 1, -1, -1):
            suffix[i] = suffix[i + 1] + self.counts[i]
        object.__setattr__(self, "_suffix", tuple(suffix))

    @property
    def samples(self) -> float:
        return float(self._suffix[0])  # type: ignore[attr-defined]

    def bucket(self, increment: int) -> int:
        if increment >= self.high:
            return BUCKETS
        width = (self.high - self.low) / BUCKETS
        return max(0, min(BUCKETS - 1, int((increment - self.low) / width))) if width > 0 else 0

    def tail(self, increment: int) -> float:
        """Share of increments at or above ``increment`` (linear within a bucket)."""
        total = self.samples
        if total <= 0:
            return 1.0
        if increment >= self.high:
            return self.counts[BUCKETS] / total
        index = self.bucket(increment)
        width = (self.high - self.low) / BUCKETS
        lower_edge = self.low + index * width
        inside = 1.0 - (increment - lower_edge) / width if width > 0 else 1.0
        above = self._suffix[index + 1]  # type: ignore[attr-defined]
        return min(1.0, (above + self.counts[index] * max(0.0, inside)) / total)


def _prior(low: int, high: int) -> Sketch:
    """Increments spread evenly over [low, high]: one unit of mass per integer value."""
    span = high - low + 1
    per_bucket = (span - 1) / BUCKETS
    return Sketch(low=low, high=high, counts=tuple([per_bucket] * BUCKETS + [1.0]))


class _Memo:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.loaded_at = -1e18
        self.sketches: dict[str, Sketch] = {}
        self.tails: dict[tuple[str, int], float] = {}  # at most one entry per increment value and type


_memo = _Memo()


def _stored() -> dict[str, Any]:
    try:
        value = cache.get(CACHE_KEY)
    except REDIS_ERRORS:
        return {}
    return value if isinstance(value, dict) else {}


def _sketches() -> dict[str, Sketch]:
    now = time.monotonic()
    if now - _memo.loaded_at < MEMO_SECONDS:
        return _memo.sketches
    with _memo.lock:
        if now - _memo.loaded_at < MEMO_SECONDS:
            return _memo.sketches
        stored = _stored()
        sketches = {}
        for name, rule in settings.ACTION_TYPES.items():
            low, high = int(rule["min_increment"]), int(rule["max_increment"])
            raw = stored.get(name)
            if (
                isinstance(raw, dict)
                and raw.get("low") == low
                and raw.get("high") == high
                and len(raw.get("counts", ())) == BUCKETS + 1
                and sum(raw["counts"]) >= MIN_SAMPLES
            ):
                sketches[name] = Sketch(low=low, high=high, counts=tuple(float(c) for c in raw["counts"]))
            else:
                sketches[name] = _prior(low, high)
        _memo.sketches = sketches
        _memo.tails = {}
        _memo.loaded_at = now
    return sketches


def forget() -> None:
    """Drop this process' copy (tests, and the batch job after a refresh)."""
    _memo.loaded_at = -1e18


def increment_tail(action_type: str, increment: int) -> float:
    return tails_for([(action_type, increment)]).get((action_type, increment), 0.5)


def tails_for(pairs: Iterable[tuple[str, int]]) -> dict[tuple[str, int], float]:
    sketches = _sketches()
    cache = _memo.tails
    out = {}
    for pair in pairs:
        tail = cache.get(pair)
        if tail is None:
            sketch = sketches.get(pair[0])
            if sketch is None:
                continue
            tail = cache[pair] = sketch.tail(pair[1])
        out[pair] = tail
    return out


def describe() -> dict[str, dict[str, int]]:
    """Per action type: samples and a few quantiles (for the README, admin and the simulation)."""
    out = {}
    for name, sketch in _sketches().items():
        out[name] = {"samples": round(sketch.samples)}
    return out


def population_refresh(*, since: dt.datetime) -> dict[str, int]:
    """Decay the stored sketch and add the applied actions since ``since`` of players in good standing.

    Streams the rows (bounded memory) and returns how many increments each action type took in.
    """
    # Players the engine held back (blocked) in the window are left out; merely flagged ones are not:
    # humans with high scores get flagged now and then, and leaving them out would shrink the
    # sketch's top, make the next humans' high scores look rarer and flag them in turn (a feedback
    # loop the full simulation showed). Farms that are never blocked are left out by OUTLIER_MEAN_SURPRISE.
    flagged = FraudLog.objects.filter(
        user_id=OuterRef("user_id"), created_at__gte=since, decision=FraudLog.Decision.BLOCKED
    )
    rows = (
        ScoreHistory.objects.filter(
            created_at__gte=since,
            kind=ScoreHistory.Kind.ACTION,
            user__is_active=True,
            user__is_quarantined=False,
        )
        .exclude(Exists(flagged))
        .values_list("user_id", "action_type", "score_increment")
        .order_by()
    )
    stored = _stored()
    counts: dict[str, list[float]] = {}
    bounds: dict[str, tuple[int, int]] = {}
    for name, rule in settings.ACTION_TYPES.items():
        low, high = int(rule["min_increment"]), int(rule["max_increment"])
        bounds[name] = (low, high)
        raw = stored.get(name)
        if isinstance(raw, dict) and raw.get("low") == low and raw.get("high") == high:
            counts[name] = [float(c) * DECAY for c in raw.get("counts", [0.0] * (BUCKETS + 1))]
        if name not in counts or len(counts[name]) != BUCKETS + 1:
            counts[name] = [0.0] * (BUCKETS + 1)
    # Each player's increments (at most PER_PLAYER_SAMPLES), then only the players who score like
    # the population as it stands: a farm at the ceiling must not teach the sketch that the ceiling
    # is normal. Under the current sketch a human's -ln(tail) averages about 1; a farmer's is ~5.
    current = _sketches()
    per_player: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for user_id, action_type, increment in rows.iterator(chunk_size=2000):
        samples = per_player[str(user_id)]
        if action_type in bounds and len(samples) < PER_PLAYER_SAMPLES:
            samples.append((action_type, int(increment)))
    added: dict[str, int] = defaultdict(int)
    for samples in per_player.values():
        surprise = [-math.log(max(TAIL_FLOOR, current[t].tail(i) if t in current else 0.5)) for t, i in samples]
        if surprise and sum(surprise) / len(surprise) > OUTLIER_MEAN_SURPRISE:
            continue
        for action_type, increment in samples:
            low, high = bounds[action_type]
            counts[action_type][Sketch(low=low, high=high, counts=()).bucket(increment)] += 1
            added[action_type] += 1
    value = {
        name: {"low": bounds[name][0], "high": bounds[name][1], "counts": [round(c, 3) for c in counts[name]]}
        for name in bounds
    }
    try:
        cache.set(CACHE_KEY, value, timeout=CACHE_TTL_SECONDS)
    except REDIS_ERRORS:
        logger.warning("redis unavailable; the population sketch was not stored")
    forget()
    return dict(added)
