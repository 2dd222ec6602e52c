"""The fraud rules: small pure functions over what we know about one score attempt.

Each rule returns a ``Finding``: a contribution in [0, 1] (0 = nothing suspicious, 1 = as suspicious
as this rule can say) and a sentence a moderator can read. ``assess`` multiplies each contribution
by the rule's weight (``FRAUD_RULE_WEIGHTS``), sums them and caps the sum at 1: that is the risk
score. No rule can block on its own with the default weights; it takes two or three independent
signals, which is what keeps humans with odd habits out of trouble.

The rules see only ``Signals``; loading the windows (Redis, or PostgreSQL in the embedded default)
is ``fraud.windows``' job, so every rule can be tested on a crafted history.
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

RAPID_SUCCESSION = "rapid_succession"
IMPOSSIBLE_SCORE_JUMP = "impossible_score_jump"
TIMING_REGULARITY = "timing_regularity"
MIN_PLAY_TIME = "min_play_time"
NEW_ACCOUNT_VELOCITY = "new_account_velocity"
SHARED_IP = "shared_ip"
TOKEN_ABUSE = "token_abuse"
VELOCITY_BUDGET = "velocity_budget"
INCREMENT_PERSISTENCE = "increment_persistence"
OPENING_RUN = "opening_run"
ACCOUNT_CLUSTER = "account_cluster"

TOTAL = "*"  # the velocity scope of every action type together
# The all-types velocity counts each increment in thousandths of its type's maximum ("shares"): the
# types' units differ (points, a lap time in ms), so raw increments cannot be added up.
SHARE_UNIT = 1000

SECONDS_PER_MINUTE = 60


@dataclass(frozen=True)
class Attempt:
    """One earlier score attempt of the player (applied or blocked)."""

    submitted_at: float  # server clock, Unix seconds
    action_timestamp: int  # the token's ``timestamp``: when the game server saw the action
    action_type: str
    score_increment: int
    action_id: str = ""  # a prefix is enough: it only tells a retry of the same action apart


@dataclass(frozen=True)
class Signals:
    """Everything the rules look at for one attempt."""

    now: float
    action_type: str
    score_increment: int
    action_timestamp: int
    action_id: str = ""
    recent: Sequence[Attempt] = ()  # newest first, without the current attempt
    account_age_seconds: float = 10**9
    score_before: int = 0
    ip_address: str | None = None
    accounts_on_ip: int = 1  # players seen scoring from this IP in the last hour, this one included
    rejected_tokens_player: int = 0  # invalid/replayed tokens in the last TOKEN_ABUSE_WINDOW_SECONDS
    rejected_tokens_ip: int = 0
    # (window seconds, action type or TOTAL) -> (points, submissions) in that rolling window, this
    # attempt included; for TOTAL the points are in SHARE_UNIT-ths of each type's maximum increment.
    # Empty when the window store could not say (the rule then sits out).
    velocity: Mapping[tuple[int, str], tuple[int, int]] = field(default_factory=dict)
    # The population's upper-tail share of each increment, keyed by (action type, increment), for
    # this attempt and the ``recent`` ones (``fraud.population``); missing pairs count as typical.
    increment_tails: Mapping[tuple[str, int], float] = field(default_factory=dict)
    clusters: Sequence[ClusterView] = ()
    # (action type, seconds) -> share of players' spacings between consecutive actions of the type at
    # or below that many seconds (``fraud.population.gap_tail``); None: no spacing evidence (1.0).
    gap_tail: Callable[[str, float], float] | None = None


@dataclass(frozen=True)
class ClusterView:
    """Accounts that scored from one address, subnet or device fingerprint in the last hour."""

    kind: str  # "address", "subnet" or "fingerprint"
    key: str  # what a moderator reads: the address, the subnet, or "<user agent> on <subnet>"
    accounts: int  # accounts seen in the last hour, this one included
    submissions: int  # their submissions in the window
    tail_sum: float  # sum over those submissions of -ln(population upper-tail share of the increment)


@dataclass(frozen=True)
class ActionRule:
    min_increment: int
    max_increment: int
    min_play_seconds: int
    suspicious_increment: int


@dataclass(frozen=True)
class RuleConfig:
    """The rules' tunables (``FRAUD_RULE_PARAMS``); every limit has one name."""

    action_types: Mapping[str, ActionRule]
    rapid_succession_per_minute: int = 5
    rapid_succession_full_after: int = 3  # this many updates over the limit -> full contribution
    jump_relative_factor: float = 10.0  # an increment this many times the player's median is a jump
    jump_relative_min_samples: int = 5
    jump_relative_contribution: float = 0.5
    regularity_min_intervals: int = 4
    regularity_sample: int = 8
    regularity_cv_bot: float = 0.05  # coefficient of variation at or below: machine-like
    # At or above: human-like (8 intervals of a person who varies by 30% can sample at 17%).
    regularity_cv_human: float = 0.12
    new_account_seconds: int = 24 * 3600
    new_account_points_per_minute: int = 1000
    new_account_min_age_seconds: int = 600  # rates of younger accounts are measured over this much
    shared_ip_accounts: int = 3  # more accounts than this on one IP start to count
    shared_ip_accounts_full: int = 10
    token_abuse_player_min: int = 2
    token_abuse_player_full: int = 5
    token_abuse_ip_min: int = 5
    token_abuse_ip_full: int = 20
    # Velocity budgets (``fraud.budgets``): a window's budget is what a keen human can do in it.
    velocity_sustained_play_factor: float = 3.0  # a keen human averages one action per this x min play time
    velocity_sustained_increment: float = 0.75  # ... at this point of the increment range (a good player)
    velocity_burst_actions: int = 5  # ... plus a burst of this many quick levels at the maximum increment
    velocity_full_ratio: float = 1.5  # used / budget at which the contribution is full (it starts at 1)
    velocity_total_factor: float = 1.5  # the all-types budget is this x the largest per-type one
    # Population-relative increments: the rarest run among the last few increments' tails.
    persistence_sample: int = 12  # the last this many increments of the type, the current one included
    persistence_current_tail: float = 0.2  # only when the current increment is itself this high
    # Below the ceiling a player's style may reach the population's top this many times as often as
    # the mix of styles the sketch holds (players who score large increments); the ceiling's own
    # bucket (a perfect level) is counted as it is.
    persistence_style_factor: float = 2.0
    # Mid-session a player has a new run at every level, so a human's long session has many chances to
    # be rare once: judged at 1 in 10^5 (the opening, one chance per session, at 1 in ~10^3).
    persistence_log10_start: float = 4.5  # a human's run is this rare (10^-4.5): the rule starts
    persistence_log10_full: float = 5.0  # ... 10^-5: full contribution (alone: quarantine)
    # The opening run: a session's first ``opening_actions`` actions of a type, judged together.
    opening_actions: int = 3
    opening_tail: float = 0.2  # every increment of the opening in the population's top 20%
    opening_log10_start: float = 2.75  # the opening (increments and spacing) is this rare: the rule starts
    opening_log10_full: float = 3.25  # ... full contribution (alone: quarantine; with the jump rule from 10^-3)
    tail_floor: float = 0.005  # the smallest tail a sketch can tell (its top bucket)
    # Account clusters: judged by how their members score, not by how many they are.
    cluster_min_accounts: int = 3
    cluster_log10_start: float = 3.0
    cluster_log10_full: float = 6.0
    cluster_own_log10: float = 1.3  # the player's own increments must be unusual too (p <= 0.05)
    cluster_min_mean_surprise: float = 2.0  # mean -ln(tail) per submission: humans ~1, a farm ~5

    def action(self, action_type: str) -> ActionRule:
        return self.action_types[action_type]


def action_rules_from_settings(action_types: Mapping[str, Mapping[str, int]]) -> dict[str, ActionRule]:
    """``ACTION_TYPES`` -> ActionRule; ``suspicious_increment`` defaults to 90% of the maximum."""
    rules = {}
    for name, rule in action_types.items():
        high = int(rule["max_increment"])
        rules[name] = ActionRule(
            min_increment=int(rule["min_increment"]),
            max_increment=high,
            min_play_seconds=int(rule.get("min_play_seconds", 0)),
            suspicious_increment=int(rule.get("suspicious_increment", max(1, (high * 9) // 10))),
        )
    return rules


@dataclass(frozen=True)
class Finding:
    contribution: float
    reason: str

    def __post_init__(self) -> None:
        if not 0.0 <= self.contribution <= 1.0:
            raise ValueError(f"contribution {self.contribution} outside [0, 1]")


NOTHING = Finding(0.0, "")


def _ramp(value: float, low: float, high: float) -> float:
    """0 at ``low``, 1 at ``high``, linear between (either direction), clamped."""
    if high == low:
        return 1.0 if value >= high else 0.0
    return min(1.0, max(0.0, (value - low) / (high - low)))


# ---------------------------------------------------------------------------------------------
# The rules
# ---------------------------------------------------------------------------------------------
def rapid_succession(s: Signals, c: RuleConfig) -> Finding:
    """More than ``rapid_succession_per_minute`` updates within one minute."""
    since = s.now - SECONDS_PER_MINUTE
    count = 1 + sum(a.submitted_at > since for a in _dedup(s))
    limit = c.rapid_succession_per_minute
    if count <= limit:
        return NOTHING
    return Finding(
        _ramp(count - limit, 0, c.rapid_succession_full_after),
        f"{count} score updates within one minute (more than {limit})",
    )


def impossible_score_jump(s: Signals, c: RuleConfig) -> Finding:
    """An increment near the action type's ceiling, or far above what this player usually earns."""
    rule = c.action(s.action_type)
    if s.score_increment >= rule.suspicious_increment:
        return Finding(
            1.0,
            f"increment {s.score_increment} for {s.action_type} is at or above {rule.suspicious_increment} "
            f"(the ceiling is {rule.max_increment})",
        )
    same_type = [a.score_increment for a in _dedup(s) if a.action_type == s.action_type]
    if len(same_type) >= c.jump_relative_min_samples:
        median = statistics.median(same_type)
        if median > 0 and s.score_increment >= c.jump_relative_factor * median:
            return Finding(
                c.jump_relative_contribution,
                f"increment {s.score_increment} is {s.score_increment / median:.0f}x this player's median "
                f"{median:g} for {s.action_type}",
            )
    return NOTHING


def timing_regularity(s: Signals, c: RuleConfig) -> Finding:
    """Near-constant intervals between submissions: people vary, scripts do not."""
    times = [s.now, *(a.submitted_at for a in _dedup(s)[: c.regularity_sample])]
    # abs(): submission times come from several processes' clocks, which may disagree slightly.
    intervals = [abs(newer - older) for newer, older in itertools.pairwise(times)]
    if len(intervals) < c.regularity_min_intervals:
        return NOTHING
    # By hand: statistics.pstdev computes exactly with fractions, ~100 us on the score path.
    n = len(intervals)
    mean = sum(intervals) / n
    spread = math.sqrt(sum((x - mean) ** 2 for x in intervals) / n)
    # Against at least a second: a loop firing within one second is machine-like however its
    # milliseconds vary (no person varies by less than a second on a level).
    cv = spread / max(mean, 1.0)
    contribution = _ramp(cv, c.regularity_cv_human, c.regularity_cv_bot)
    if contribution == 0:
        return NOTHING
    return Finding(
        contribution,
        f"the last {len(intervals)} intervals between submissions average {mean:.2f}s and vary by only "
        f"{cv * 100:.1f}% (people vary by more than {c.regularity_cv_human * 100:.0f}%)",
    )


def _same_action(recorded: str, current: str) -> bool:
    """The window keeps a prefix of each action id; a retry of the same action is not a second action."""
    return bool(recorded) and current.startswith(recorded)


def min_play_time(s: Signals, c: RuleConfig) -> Finding:
    """Two actions of one type closer together (by their action timestamps) than the type's play time.

    Play time is the spacing between the player's action timestamps, not the token's age at
    submission (DESIGN). The nearest earlier action of the same type counts, in either direction,
    so tokens submitted out of order are judged the same; a retry of the same action does not count.
    """
    minimum = c.action(s.action_type).min_play_seconds
    if minimum <= 0:
        return NOTHING
    spacings = [
        abs(s.action_timestamp - a.action_timestamp)
        for a in s.recent
        if a.action_type == s.action_type and not _same_action(a.action_id, s.action_id)
    ]
    if not spacings:
        return NOTHING
    nearest = min(spacings)
    if nearest >= minimum:
        return NOTHING
    return Finding(
        _ramp(nearest, minimum, 0),
        f"two {s.action_type} actions {nearest}s apart; the minimum play time is {minimum}s",
    )


def new_account_velocity(s: Signals, c: RuleConfig) -> Finding:
    """A young account earning points faster than new players do."""
    if s.account_age_seconds >= c.new_account_seconds:
        return NOTHING
    points = s.score_before + s.score_increment
    minutes = max(s.account_age_seconds, c.new_account_min_age_seconds) / SECONDS_PER_MINUTE
    rate = points / minutes
    limit = c.new_account_points_per_minute
    if rate <= limit:
        return NOTHING
    return Finding(
        _ramp(rate, limit, 2 * limit),
        f"account is {s.account_age_seconds / 60:.0f} min old and has {points} points "
        f"({rate:.0f} per minute; new accounts above {limit}/min are unusual)",
    )


def shared_ip(s: Signals, c: RuleConfig) -> Finding:
    """Many accounts scoring from one address within an hour (farms; also big NATs, hence the low weight)."""
    if s.accounts_on_ip <= c.shared_ip_accounts:
        return NOTHING
    return Finding(
        _ramp(s.accounts_on_ip, c.shared_ip_accounts, c.shared_ip_accounts_full),
        f"{s.accounts_on_ip} accounts submitted scores from {s.ip_address or 'this address'} in the last hour",
    )


def token_abuse(s: Signals, c: RuleConfig) -> Finding:
    """Repeated invalid, expired, foreign or replayed action tokens from this player or this IP."""
    by_player = (
        _ramp(s.rejected_tokens_player, c.token_abuse_player_min - 1, c.token_abuse_player_full)
        if s.rejected_tokens_player >= c.token_abuse_player_min
        else 0.0
    )
    by_ip = (
        _ramp(s.rejected_tokens_ip, c.token_abuse_ip_min - 1, c.token_abuse_ip_full)
        if s.rejected_tokens_ip >= c.token_abuse_ip_min
        else 0.0
    )
    contribution = max(by_player, by_ip)
    if contribution == 0:
        return NOTHING
    return Finding(
        contribution,
        f"{s.rejected_tokens_player} rejected action tokens from this player and {s.rejected_tokens_ip} "
        "from this address in the last 10 minutes",
    )


def _dedup(s: Signals) -> list[Attempt]:
    """The window without retries of the current action (same action id): a retry is not a second action.

    Computed once per attempt (several rules read it); the signals are frozen, so it never changes.
    """
    cached: list[Attempt] | None = s.__dict__.get("_dedup")
    if cached is None:
        current = s.action_id
        cached = [a for a in s.recent if not (a.action_id and current.startswith(a.action_id))]
        s.__dict__["_dedup"] = cached
    return cached


def gamma_sf(k: int, x: float) -> float:
    """P(Gamma(k, 1) >= x) for integer k: under "a human like the others", each -ln(tail) is Exp(1),
    so the sum of k of them is Gamma(k) (Fisher's method)."""
    if x <= 0:
        return 1.0
    term = total = 1.0
    for j in range(1, k):
        term *= x / j
        total += term
    return min(1.0, math.exp(-x) * total)


def _tail(s: Signals, c: RuleConfig, action_type: str, increment: int) -> float:
    return max(c.tail_floor, min(1.0, s.increment_tails.get((action_type, increment), 0.5)))


def velocity_budget(s: Signals, c: RuleConfig) -> Finding:
    """Points or submissions in a rolling window (1 min, 10 min, 1 h) beyond what a keen human can do."""
    worst: tuple[float, str] = (0.0, "")
    for (window, scope), (points, count) in s.velocity.items():
        budget = budget_for(c, window=window, scope=scope)
        if budget is None:
            continue
        for used, allowed, unit in ((points, budget[0], "points"), (count, budget[1], "submissions")):
            ratio = used / allowed if allowed > 0 else 0.0
            if ratio > 1 and ratio > worst[0]:
                if scope != TOTAL:
                    said = f"{used:,} {unit} in {window // 60} min for {scope}; a keen human's budget is {allowed:,}"
                elif unit == "points":
                    said = (
                        f"points worth {used / SHARE_UNIT:,.1f} maximum increments in {window // 60} min over all "
                        f"action types; a keen human's budget is {allowed / SHARE_UNIT:,.1f}"
                    )
                else:
                    said = (
                        f"{used:,} submissions in {window // 60} min over all action types; "
                        f"a keen human's budget is {allowed:,}"
                    )
                worst = (ratio, f"{said} ({ratio:.1f}x)")
    if worst[0] <= 1:
        return NOTHING
    return Finding(_ramp(worst[0], 1.0, c.velocity_full_ratio), worst[1])


def budget_for(c: RuleConfig, *, window: int, scope: str) -> tuple[int, int] | None:
    cache = c.__dict__.setdefault("_budgets", {})  # the config is frozen; its budgets never change
    key = (window, scope)
    if key not in cache:
        cache[key] = _budget(c, window=window, scope=scope)
    budget: tuple[int, int] | None = cache[key]
    return budget


def _budget(c: RuleConfig, *, window: int, scope: str) -> tuple[int, int] | None:
    """(points, submissions) a keen human can make in ``window`` seconds of one action type (or all).

    From the action type alone: a burst of ``velocity_burst_actions`` quick levels at the maximum
    increment, then one action per ``velocity_sustained_play_factor`` x min play time at
    ``velocity_sustained_increment`` (3/4) of the increment range. The all-types budget is
    ``velocity_total_factor`` x the largest one, its points in ``SHARE_UNIT``-ths of each type's maximum
    increment (the types' units differ: a lap time in ms is not worth its millions of points).
    """
    if scope == TOTAL:
        shares, counts = [], []
        for name, each in c.action_types.items():
            budget = budget_for(c, window=window, scope=name)
            if budget is not None and each.max_increment > 0:
                shares.append(budget[0] * SHARE_UNIT / each.max_increment)
                counts.append(budget[1])
        if not shares:
            return None
        return round(max(shares) * c.velocity_total_factor), round(max(counts) * c.velocity_total_factor)
    rule = c.action_types.get(scope)
    if rule is None:
        return None
    pace = max(1.0, rule.min_play_seconds * c.velocity_sustained_play_factor)
    sustained = window / pace
    typical = rule.min_increment + c.velocity_sustained_increment * (rule.max_increment - rule.min_increment)
    points = c.velocity_burst_actions * rule.max_increment + typical * sustained
    return round(points), round(c.velocity_burst_actions + sustained)


def run_probability(tails: Sequence[float], *, min_run: int = 2) -> tuple[float, int]:
    """How likely a human scoring like the others is to score as high as this run, newest first.

    For each run length j (the newest j increments), the chance that j independent increments all
    reach the least extreme of them is (largest tail among them)^j; the rarest run wins. Returns
    (probability, run length). Three increments each in the top 5% -> 1.25e-4.
    """
    best, length = 1.0, 0
    worst_tail = 0.0
    for j, tail in enumerate(tails, start=1):
        worst_tail = max(worst_tail, tail)
        if j >= min_run and worst_tail**j < best:
            best, length = worst_tail**j, j
    return best, length


def increment_persistence(s: Signals, c: RuleConfig) -> Finding:
    """Increments persistently at the top of what the population scores for the action type.

    Each increment's tail is the share of players' increments of the type at or above it (the
    population sketch). Over the newest ``persistence_sample`` increments of the type, the rarest run
    (``run_probability``) says how likely a human scoring like the others is to do the same: one high
    score is not unusual, three at the ceiling in a row (a perfect level ~3% of the time) happen once
    in ~30,000 runs. Below the ceiling each tail is multiplied by ``persistence_style_factor``: the
    sketch mixes every style, and a player who scores large increments reaches its top more often
    than the mix (measured: players scoring 20-1,000 evenly reach the top 10% 1.5x as often).
    """
    current = _tail(s, c, s.action_type, s.score_increment)
    if current > c.persistence_current_tail:
        return NOTHING
    same = [a for a in _dedup(s) if a.action_type == s.action_type][: c.persistence_sample - 1]
    increments = [s.score_increment, *(a.score_increment for a in same)]
    tails = [current, *(_tail(s, c, s.action_type, a.score_increment) for a in same)]
    ceiling = c.action(s.action_type).max_increment
    judged = [
        t if inc >= ceiling else min(1.0, t * c.persistence_style_factor)
        for inc, t in zip(increments, tails, strict=True)
    ]
    p, run = run_probability(judged)
    strength = -math.log10(max(p, 1e-300))
    contribution = _ramp(strength, c.persistence_log10_start, c.persistence_log10_full)
    if contribution == 0:
        return NOTHING
    shown = ", ".join(f"{inc} (top {t * 100:.1f}%)" for inc, t in zip(increments[:run], tails[:run], strict=True))
    return Finding(
        contribution,
        f"the last {run} {s.action_type} increments {shown} of players' increments; "
        f"a human scoring like the others does this once in {_one_in(p)} runs",
    )


def opening_run(s: Signals, c: RuleConfig) -> Finding:
    """The first 2-3 actions of a type in the player's window (a session's opening), judged together.

    A bot's first submission looks like a keen human's; its second and third are where it can be
    told apart, before any mid-session statistic has a run to read. Only when every increment of the
    opening sits in the population's top ``opening_tail``: the chance that a human scoring like the
    others opens as high is (largest tail)^n, and as quickly (the spacing sketch: the share of
    players' spacings at or below each gap) (largest gap tail)^(n-1); their product is judged at
    about 1 in 1,000 — one chance per session, where mid-session runs (``increment_persistence``)
    get one per level and are judged at 1 in 100,000. Two perfect levels 30 s apart where 3% of
    levels are perfect: 1 in ~1,600 (partial); three at the ceiling 15 s apart: quarantine.
    """
    same = [a for a in _dedup(s) if a.action_type == s.action_type]
    if not same or len(same) >= c.opening_actions:
        return NOTHING
    current = _tail(s, c, s.action_type, s.score_increment)
    if current > c.opening_tail:
        return NOTHING
    tails = [current, *(_tail(s, c, s.action_type, a.score_increment) for a in same)]
    if max(tails) > c.opening_tail:
        return NOTHING
    times = [s.now, *(a.submitted_at for a in same)]
    gaps = [abs(newer - older) for newer, older in itertools.pairwise(times)]
    gap_tails = [s.gap_tail(s.action_type, gap) if s.gap_tail is not None else 1.0 for gap in gaps]
    n = len(tails)
    p_increments = max(tails) ** n
    p_spacing = max(gap_tails) ** (n - 1)
    p = p_increments * p_spacing
    contribution = _ramp(-math.log10(max(p, 1e-300)), c.opening_log10_start, c.opening_log10_full)
    if contribution == 0:
        return NOTHING
    increments = [s.score_increment, *(a.score_increment for a in same)]
    shown = ", ".join(
        f"{inc} (top {t * 100:.1f}%)" for inc, t in zip(reversed(increments), reversed(tails), strict=True)
    )
    spacing = ", ".join(
        f"{g:.0f}s (quickest {t * 100:.0f}%)" for g, t in zip(reversed(gaps), reversed(gap_tails), strict=True)
    )
    return Finding(
        contribution,
        f"the player's first {n} {s.action_type} actions of the hour: {shown} of players' increments, "
        f"{spacing} apart; a human scoring and pacing like the others opens like this once in {_one_in(p)} sessions",
    )


def _one_in(p: float) -> str:
    return f"{1 / p:,.0f}" if p > 1e-12 else "more than 10^12"


def account_cluster(s: Signals, c: RuleConfig) -> Finding:
    """Accounts on one address, subnet or device fingerprint that score together like a farm.

    The count alone proves nothing (carrier NAT, campus networks): the cluster's increments are
    combined like ``increment_persistence`` — a NAT of humans scores like the population and stays
    at zero, a farm at the ceiling does not — and the player's own recent increments must be unusual
    too, so a human behind the same NAT as a farm is not judged by the farm.
    """
    if not any(cl.accounts >= c.cluster_min_accounts for cl in s.clusters):
        return NOTHING
    own_tails = [_tail(s, c, s.action_type, s.score_increment)]
    own_tails += [_tail(s, c, a.action_type, a.score_increment) for a in _dedup(s)[: c.persistence_sample - 1]]
    own_p = gamma_sf(len(own_tails), -sum(math.log(t) for t in own_tails))
    if -math.log10(max(own_p, 1e-300)) < c.cluster_own_log10:
        return NOTHING
    best: tuple[float, str] = (0.0, "")
    for cluster in s.clusters:
        if cluster.accounts < c.cluster_min_accounts or cluster.submissions <= 0:
            continue
        # A big NAT's hundreds of submissions make a tiny p-value out of a slightly miscalibrated
        # sketch; a farm is far from the population on average, not just in total.
        if cluster.tail_sum / cluster.submissions < c.cluster_min_mean_surprise:
            continue
        p = gamma_sf(cluster.submissions, cluster.tail_sum)
        strength = -math.log10(max(p, 1e-300))
        contribution = _ramp(strength, c.cluster_log10_start, c.cluster_log10_full)
        if contribution > best[0]:
            best = (
                contribution,
                f"{cluster.accounts} accounts scored {cluster.submissions} "
                f"times from {cluster.kind} {cluster.key} in the last hour, together at the top of players' "
                f"increments (1 in {_one_in(p)} for as many humans)",
            )
    if best[0] == 0:
        return NOTHING
    return Finding(*best)


Rule = Callable[[Signals, RuleConfig], Finding]

RULES: dict[str, Rule] = {
    RAPID_SUCCESSION: rapid_succession,
    IMPOSSIBLE_SCORE_JUMP: impossible_score_jump,
    TIMING_REGULARITY: timing_regularity,
    MIN_PLAY_TIME: min_play_time,
    NEW_ACCOUNT_VELOCITY: new_account_velocity,
    SHARED_IP: shared_ip,
    TOKEN_ABUSE: token_abuse,
    VELOCITY_BUDGET: velocity_budget,
    INCREMENT_PERSISTENCE: increment_persistence,
    OPENING_RUN: opening_run,
    ACCOUNT_CLUSTER: account_cluster,
}


# ---------------------------------------------------------------------------------------------
# Combining
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Fired:
    rule: str
    weight: float
    contribution: float
    reason: str

    @property
    def weighted(self) -> float:
        return self.weight * self.contribution

    def as_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "weight": self.weight,
            "contribution": round(self.contribution, 3),
            "weighted": round(self.weighted, 3),
            "reason": self.reason,
        }


# Statistical evidence (how rare the player's behaviour is among players) can hide a player — the
# quarantine is applied, invisible to the player and reversible — but never refuse an update: an
# attempt is blocked only when the other rules alone reach the block threshold.
QUARANTINE_ONLY = frozenset({INCREMENT_PERSISTENCE, OPENING_RUN, ACCOUNT_CLUSTER})
# A quarantine needs evidence about how the player has been scoring over time — the statistical rules
# or a velocity budget exceeded (beyond what a keen human can do in minutes or an hour) — not only
# the per-request thresholds: 8 updates in a minute and one perfect level are what keen humans do.
SUSTAINED_EVIDENCE = QUARANTINE_ONLY | {VELOCITY_BUDGET}


@dataclass(frozen=True)
class Verdict:
    risk_score: float
    fired: list[Fired] = field(default_factory=list)
    # The risk of the rules that may block (all but QUARANTINE_ONLY).
    blocking_score: float = 0.0

    @property
    def statistical(self) -> bool:
        """A rule of ``SUSTAINED_EVIDENCE`` fired: only then may the verdict quarantine."""
        return any(f.rule in SUSTAINED_EVIDENCE for f in self.fired)

    @property
    def primary_rule(self) -> str:
        return max(self.fired, key=lambda f: f.weighted).rule if self.fired else ""


def assess(signals: Signals, config: RuleConfig, weights: Mapping[str, float]) -> Verdict:
    """Run every rule; risk = min(1, sum of weight x contribution), rounded to two decimals."""
    fired = []
    for name, rule in RULES.items():
        weight = float(weights.get(name, 0.0))
        if weight <= 0:
            continue
        finding = rule(signals, config)
        if finding.contribution > 0:
            fired.append(Fired(rule=name, weight=weight, contribution=finding.contribution, reason=finding.reason))
    fired.sort(key=lambda f: f.weighted, reverse=True)
    risk = min(1.0, sum(f.weighted for f in fired))
    blocking = min(1.0, sum(f.weighted for f in fired if f.rule not in QUARANTINE_ONLY))
    return Verdict(risk_score=round(risk, 2), fired=fired, blocking_score=round(blocking, 2))
