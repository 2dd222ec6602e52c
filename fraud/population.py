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
the type's range, the maximum as common as each fortieth of it (all that configuration says about
how humans score, and that games have perfect levels).

Beside the increments, a second bounded histogram per action type holds the *spacing* of players'
actions: the seconds between one player's consecutive applied actions of the type (under an hour),
in ``GAP_BUCKETS`` buckets half a power of two wide from ``GAP_LOW_SECONDS``. ``gap_tail`` is its lower
tail — the share of players' spacings at or below a gap (how quickly humans follow one level with the
next). Until a type has ``MIN_SAMPLES`` spacings there is no prior: every gap counts as typical (1.0).
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
GAP_BUCKETS = 26  # [0.5 s, 4,096 s): half a power of two each
GAP_LOW_SECONDS = 0.5
GAP_MAX_SECONDS = 3600.0  # a longer pause is a new session, not a spacing


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


def _gap_bucket(seconds: float) -> int:
    if seconds <= GAP_LOW_SECONDS:
        return 0
    return min(GAP_BUCKETS - 1, int(2 * math.log2(seconds / GAP_LOW_SECONDS)))


@dataclass(frozen=True)
class GapSketch:
    """Counts of spacings between a player's consecutive actions, bucket i = [0.5 x 2^(i/2), 0.5 x 2^((i+1)/2))."""

    counts: tuple[float, ...]

    def __post_init__(self) -> None:
        prefix = [0.0]
        for count in self.counts:
            prefix.append(prefix[-1] + count)
        object.__setattr__(self, "_prefix", tuple(prefix))

    @property
    def samples(self) -> float:
        return float(self._prefix[-1])  # type: ignore[attr-defined]

    def tail(self, seconds: float) -> float:
        """Share of spacings at or below ``seconds`` (log-linear within a bucket), at least TAIL_FLOOR."""
        total = self.samples
        if total < MIN_SAMPLES:
            return 1.0
        index = _gap_bucket(seconds)
        lower = GAP_LOW_SECONDS * 2 ** (index / 2)
        inside = min(1.0, max(0.0, 2 * math.log2(max(seconds, GAP_LOW_SECONDS) / lower)))
        below = self._prefix[index] + self.counts[index] * inside  # type: ignore[attr-defined]
        return max(TAIL_FLOOR, min(1.0, below / total))


NO_GAPS = GapSketch(counts=(0.0,) * GAP_BUCKETS)


def _prior(low: int, high: int) -> Sketch:
    """Increments spread evenly over [low, high), and the maximum itself as common as each fortieth
    of the range: games have perfect levels (the simulation's humans 3% of the time), and a prior
    that gave the maximum one integer's worth (0.1%) made two perfect levels in a row look like a
    bot's to the opening rule (the full simulation quarantined a skilled human so in its first minute)."""
    per_bucket = max(1.0, (high - low) / BUCKETS)
    return Sketch(low=low, high=high, counts=tuple([per_bucket] * (BUCKETS + 1)))


class _Memo:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.loaded_at = -1e18
        self.sketches: dict[str, Sketch] = {}
        self.gaps: dict[str, GapSketch] = {}
        self.tails: dict[tuple[str, int], float] = {}  # at most one entry per increment value and type


_memo = _Memo()


RETRY_SECONDS = 5.0  # after a failed read, the copy in hand is kept this long before the next try


def _stored() -> dict[str, Any] | None:
    """The stored sketches; None when the cache could not be read (not the same as "none stored")."""
    try:
        value = cache.get(CACHE_KEY)
    except REDIS_ERRORS:
        return None
    return value if isinstance(value, dict) else {}


def _sketches() -> dict[str, Sketch]:
    now = time.monotonic()
    if now - _memo.loaded_at < MEMO_SECONDS:
        return _memo.sketches
    with _memo.lock:
        if now - _memo.loaded_at < MEMO_SECONDS:
            return _memo.sketches
        stored = _stored()
        if stored is None and _memo.sketches:
            # A failed read (a timeout on a loaded Redis) must not swap the learned sketch for the
            # prior for a minute: the prior puts a perfect level in the top 0.1% (the full simulation
            # quarantined keen humans for two perfect levels so). Keep the copy, retry soon.
            _memo.loaded_at = now - MEMO_SECONDS + RETRY_SECONDS
            return _memo.sketches
        stored = stored or {}
        sketches = {}
        gaps = {}
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
            raw_gaps = raw.get("gaps") if isinstance(raw, dict) else None
            if isinstance(raw_gaps, list) and len(raw_gaps) == GAP_BUCKETS:
                gaps[name] = GapSketch(counts=tuple(float(c) for c in raw_gaps))
        _memo.gaps = gaps
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


def gap_tail(action_type: str, seconds: float) -> float:
    """Share of players' spacings between consecutive actions of the type at or below ``seconds``
    (1.0 while the type has too few samples: no evidence)."""
    _sketches()
    return _memo.gaps.get(action_type, NO_GAPS).tail(seconds)


def describe() -> dict[str, dict[str, int]]:
    """Per action type: samples and a few quantiles (for the README, admin and the simulation)."""
    out = {}
    for name, sketch in _sketches().items():
        out[name] = {"samples": round(sketch.samples), "gaps": round(_memo.gaps.get(name, NO_GAPS).samples)}
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
        .values_list("user_id", "action_type", "score_increment", "created_at")
        .order_by("created_at")
    )
    stored = _stored()
    if stored is None:
        logger.warning("redis unavailable; the population sketch was not refreshed")
        return {}
    counts: dict[str, list[float]] = {}
    gap_counts: dict[str, list[float]] = {}
    bounds: dict[str, tuple[int, int]] = {}
    for name, rule in settings.ACTION_TYPES.items():
        low, high = int(rule["min_increment"]), int(rule["max_increment"])
        bounds[name] = (low, high)
        raw = stored.get(name)
        if isinstance(raw, dict) and raw.get("low") == low and raw.get("high") == high:
            counts[name] = [float(c) * DECAY for c in raw.get("counts", [0.0] * (BUCKETS + 1))]
        if name not in counts or len(counts[name]) != BUCKETS + 1:
            counts[name] = [0.0] * (BUCKETS + 1)
        raw_gaps = raw.get("gaps") if isinstance(raw, dict) else None
        if isinstance(raw_gaps, list) and len(raw_gaps) == GAP_BUCKETS:
            gap_counts[name] = [float(c) * DECAY for c in raw_gaps]
        else:
            gap_counts[name] = [0.0] * GAP_BUCKETS
    # Each player's increments (at most PER_PLAYER_SAMPLES), then only the players who score like
    # the population as it stands: a farm at the ceiling must not teach the sketch that the ceiling
    # is normal. Under the current sketch a human's -ln(tail) averages about 1; a farmer's is ~5.
    current = _sketches()
    per_player: dict[str, list[tuple[str, int]]] = defaultdict(list)
    player_gaps: dict[str, list[tuple[str, float]]] = defaultdict(list)
    last_at: dict[tuple[str, str], float] = {}
    for user_id, action_type, increment, created_at in rows.iterator(chunk_size=2000):
        samples = per_player[str(user_id)]
        if action_type in bounds and len(samples) < PER_PLAYER_SAMPLES:
            samples.append((action_type, int(increment)))
            at = created_at.timestamp()
            before = last_at.get((str(user_id), action_type))
            last_at[(str(user_id), action_type)] = at
            if before is not None and at - before < GAP_MAX_SECONDS:
                player_gaps[str(user_id)].append((action_type, at - before))
    added: dict[str, int] = defaultdict(int)
    for player, samples in per_player.items():
        surprise = [-math.log(max(TAIL_FLOOR, current[t].tail(i) if t in current else 0.5)) for t, i in samples]
        if surprise and sum(surprise) / len(surprise) > OUTLIER_MEAN_SURPRISE:
            continue
        for action_type, increment in samples:
            low, high = bounds[action_type]
            counts[action_type][Sketch(low=low, high=high, counts=()).bucket(increment)] += 1
            added[action_type] += 1
        for action_type, gap in player_gaps.get(player, []):
            gap_counts[action_type][_gap_bucket(gap)] += 1
    value = {
        name: {
            "low": bounds[name][0],
            "high": bounds[name][1],
            "counts": [round(c, 3) for c in counts[name]],
            "gaps": [round(c, 3) for c in gap_counts[name]],
        }
        for name in bounds
    }
    try:
        cache.set(CACHE_KEY, value, timeout=CACHE_TTL_SECONDS)
    except REDIS_ERRORS:
        logger.warning("redis unavailable; the population sketch was not stored")
    forget()
    return dict(added)
