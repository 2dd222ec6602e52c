"""Each fraud rule on crafted histories, positive and negative, and how they combine into a risk score."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import pytest
from django.conf import settings

from fraud import rules
from fraud.rules import Attempt, RuleConfig, Signals

pytestmark = [pytest.mark.embedded]

NOW = 1_800_000_000.0
CONFIG = RuleConfig(
    action_types=rules.action_rules_from_settings(
        {
            "LEVEL_COMPLETION": {"min_increment": 1, "max_increment": 1000, "min_play_seconds": 3},
            "ACHIEVEMENT_UNLOCK": {"min_increment": 1, "max_increment": 500, "min_play_seconds": 0},
        }
    )
)
WEIGHTS = dict(settings.DEFAULT_FRAUD_RULE_WEIGHTS)


def history(*gaps: float, increment: int = 100, action_type: str = "LEVEL_COMPLETION") -> list[Attempt]:
    """Earlier attempts, newest first: ``gaps`` are the seconds between consecutive submissions,
    starting from now; action timestamps follow the submissions."""
    attempts, t = [], NOW
    for i, gap in enumerate(gaps):
        t -= gap
        attempts.append(
            Attempt(
                submitted_at=t,
                action_timestamp=int(t),
                action_type=action_type,
                score_increment=increment,
                action_id=f"a{i:011d}",
            )
        )
    return attempts


def signals(**overrides: object) -> Signals:
    base = Signals(
        now=NOW,
        action_type="LEVEL_COMPLETION",
        score_increment=100,
        action_timestamp=int(NOW),
        action_id="current00000000000000000000000000",
        recent=(),
        account_age_seconds=30 * 24 * 3600,
        score_before=50_000,
        ip_address="203.0.113.5",
    )
    return replace(base, **overrides)  # type: ignore[arg-type]


# --- rapid succession --------------------------------------------------------------------------
def test_rapid_succession_fires_above_five_updates_in_a_minute():
    finding = rules.rapid_succession(signals(recent=history(9, 9, 9, 9, 9)), CONFIG)  # 6 within 45 s
    assert finding.contribution > 0
    assert "6 score updates within one minute" in finding.reason


def test_rapid_succession_grows_with_the_burst_and_caps_at_one():
    six = rules.rapid_succession(signals(recent=history(*[5] * 5)), CONFIG).contribution
    eight = rules.rapid_succession(signals(recent=history(*[5] * 7)), CONFIG).contribution
    ten = rules.rapid_succession(signals(recent=history(*[5] * 9)), CONFIG).contribution
    assert 0 < six < eight == ten == 1.0


def test_rapid_succession_quiet_for_five_in_a_minute_or_six_spread_over_more():
    assert rules.rapid_succession(signals(recent=history(10, 10, 10, 10)), CONFIG).contribution == 0
    assert rules.rapid_succession(signals(recent=history(13, 13, 13, 13, 13)), CONFIG).contribution == 0


# --- impossible score jump ---------------------------------------------------------------------
def test_increment_at_the_action_types_ceiling_is_a_jump():
    finding = rules.impossible_score_jump(signals(score_increment=1000), CONFIG)
    assert finding.contribution == 1.0
    assert "at or above 900" in finding.reason


def test_jump_threshold_is_per_action_type():
    # 450 is ordinary for a level (ceiling 1000) but at the ceiling of an achievement (max 500).
    assert rules.impossible_score_jump(signals(score_increment=450), CONFIG).contribution == 0
    achievement = signals(action_type="ACHIEVEMENT_UNLOCK", score_increment=450)
    assert rules.impossible_score_jump(achievement, CONFIG).contribution == 1.0


def test_increment_far_above_the_players_own_median_is_a_jump():
    usual = history(60, 60, 60, 60, 60, increment=20)
    finding = rules.impossible_score_jump(signals(score_increment=400, recent=usual), CONFIG)
    assert finding.contribution == CONFIG.jump_relative_contribution
    assert "20x this player's median" in finding.reason
    assert rules.impossible_score_jump(signals(score_increment=150, recent=usual), CONFIG).contribution == 0


def test_no_relative_jump_without_enough_history():
    few = history(60, 60, increment=20)
    assert rules.impossible_score_jump(signals(score_increment=400, recent=few), CONFIG).contribution == 0


# --- timing regularity -------------------------------------------------------------------------
def test_constant_intervals_are_machine_like():
    finding = rules.timing_regularity(signals(recent=history(7, 7, 7, 7, 7)), CONFIG)
    assert finding.contribution == 1.0
    assert "vary by only 0.0%" in finding.reason


def test_tiny_jitter_still_counts_as_regular():
    jittered = history(7.00, 7.03, 6.98, 7.01, 7.02)
    assert rules.timing_regularity(signals(recent=jittered), CONFIG).contribution == 1.0


def test_human_intervals_are_not_regular():
    assert rules.timing_regularity(signals(recent=history(12, 41, 25, 66, 19)), CONFIG).contribution == 0


def test_regularity_needs_enough_intervals():
    assert rules.timing_regularity(signals(recent=history(7, 7, 7)), CONFIG).contribution == 0


def test_moderate_variation_gives_a_partial_contribution():
    # intervals 10, 11, 9, 10.5, 9.5: coefficient of variation ~7%, between the bot and human marks
    contribution = rules.timing_regularity(signals(recent=history(10, 11, 9, 10.5, 9.5)), CONFIG).contribution
    assert 0 < contribution < 1
    # 10, 12, 8, 11, 9 (~14%): a person can sample that regular over 8 intervals; nothing.
    assert rules.timing_regularity(signals(recent=history(10, 12, 8, 11, 9)), CONFIG).contribution == 0


# --- minimum play time -------------------------------------------------------------------------
def test_two_levels_one_second_apart_are_too_fast():
    recent = [Attempt(NOW - 30, int(NOW) - 1, "LEVEL_COMPLETION", 100, "previous0000")]
    finding = rules.min_play_time(signals(recent=recent), CONFIG)
    assert finding.contribution == pytest.approx(2 / 3)
    assert "1s apart; the minimum play time is 3s" in finding.reason


def test_play_time_uses_action_timestamps_not_token_age():
    # Submitted a second apart, but the actions themselves happened 40 s apart: a client that
    # submits queued tokens quickly is fine. And a token four minutes old is not a signal at all.
    recent = [Attempt(NOW - 1, int(NOW) - 240, "LEVEL_COMPLETION", 100, "previous0000")]
    assert rules.min_play_time(signals(action_timestamp=int(NOW) - 200, recent=recent), CONFIG).contribution == 0


def test_play_time_is_judged_in_either_order():
    # Tokens submitted out of order: the nearest action of the same type counts.
    recent = [Attempt(NOW - 5, int(NOW), "LEVEL_COMPLETION", 100, "later0000000")]
    assert rules.min_play_time(signals(action_timestamp=int(NOW) - 1, recent=recent), CONFIG).contribution > 0


def test_play_time_compares_only_the_same_action_type():
    recent = [Attempt(NOW - 1, int(NOW), "ACHIEVEMENT_UNLOCK", 50, "achievement0")]
    assert rules.min_play_time(signals(recent=recent), CONFIG).contribution == 0


def test_a_retry_of_the_same_action_is_not_a_second_action():
    current = "current00000000000000000000000000"
    recent = [Attempt(NOW - 60, int(NOW), "LEVEL_COMPLETION", 100, current[:12])]
    assert rules.min_play_time(signals(action_id=current, recent=recent), CONFIG).contribution == 0


# --- new-account velocity ----------------------------------------------------------------------
def test_young_account_earning_fast_is_suspicious():
    young = signals(account_age_seconds=15 * 60, score_before=29_000, score_increment=1000)  # 2,000/min
    finding = rules.new_account_velocity(young, CONFIG)
    assert finding.contribution == 1.0
    assert "15 min old" in finding.reason


def test_young_account_at_a_human_pace_is_fine():
    young = signals(account_age_seconds=15 * 60, score_before=8_000, score_increment=400)  # 560/min
    assert rules.new_account_velocity(young, CONFIG).contribution == 0


def test_old_accounts_are_not_judged_by_velocity():
    old = signals(account_age_seconds=3 * 24 * 3600, score_before=10_000_000)
    assert rules.new_account_velocity(old, CONFIG).contribution == 0


def test_a_brand_new_account_is_measured_over_a_minimum_age():
    # One big level in the first minute is 1,000 points over the 10-minute floor: 100/min, fine.
    first = signals(account_age_seconds=30, score_before=0, score_increment=1000)
    assert rules.new_account_velocity(first, CONFIG).contribution == 0


# --- shared IP ---------------------------------------------------------------------------------
def test_many_accounts_from_one_address():
    finding = rules.shared_ip(signals(accounts_on_ip=10), CONFIG)
    assert finding.contribution == 1.0
    assert "10 accounts submitted scores from 203.0.113.5" in finding.reason
    assert 0 < rules.shared_ip(signals(accounts_on_ip=5), CONFIG).contribution < 1


def test_a_household_is_not_a_farm():
    assert rules.shared_ip(signals(accounts_on_ip=3), CONFIG).contribution == 0


# --- token abuse -------------------------------------------------------------------------------
def test_repeated_rejected_tokens_from_the_player():
    finding = rules.token_abuse(signals(rejected_tokens_player=5), CONFIG)
    assert finding.contribution == 1.0
    assert "5 rejected action tokens from this player" in finding.reason


def test_repeated_rejected_tokens_from_the_address():
    assert rules.token_abuse(signals(rejected_tokens_ip=20), CONFIG).contribution == 1.0
    assert 0 < rules.token_abuse(signals(rejected_tokens_ip=8), CONFIG).contribution < 1


def test_one_stale_token_is_not_abuse():
    assert rules.token_abuse(signals(rejected_tokens_player=1, rejected_tokens_ip=1), CONFIG).contribution == 0


# --- combining ---------------------------------------------------------------------------------
def test_a_clean_attempt_has_zero_risk():
    verdict = rules.assess(signals(recent=history(40, 95, 31, 300)), CONFIG, WEIGHTS)
    assert verdict.risk_score == 0
    assert verdict.fired == []


def test_risk_is_the_weighted_sum_with_reasons():
    # A maximal increment (0.3 x 1) with constant intervals (0.4 x 1): 0.7.
    verdict = rules.assess(signals(score_increment=1000, recent=history(7, 7, 7, 7)), CONFIG, WEIGHTS)
    assert verdict.risk_score == pytest.approx(0.7)
    assert [f.rule for f in verdict.fired] == ["timing_regularity", "impossible_score_jump"]
    assert verdict.primary_rule == "timing_regularity"
    assert all(f.reason for f in verdict.fired)


def test_risk_is_capped_at_one():
    everything = signals(
        score_increment=1000,
        recent=history(*[1] * 9),
        account_age_seconds=60,
        score_before=50_000,
        accounts_on_ip=30,
        rejected_tokens_player=10,
    )
    verdict = rules.assess(everything, CONFIG, WEIGHTS)
    assert verdict.risk_score == 1.0
    assert len(verdict.fired) == 7


def test_a_zero_weight_turns_a_rule_off():
    verdict = rules.assess(signals(score_increment=1000), CONFIG, {**WEIGHTS, "impossible_score_jump": 0})
    assert verdict.risk_score == 0


def test_with_the_default_weights_no_single_rule_flags_and_no_pair_blocks():
    """Two independent signals to flag, three to block (default thresholds 0.5 and 0.8) — except
    the statistical, quarantine-only rules: overwhelming evidence alone (increment_persistence at
    full) hides a player, reversibly, and never blocks."""
    assert set(WEIGHTS) == set(rules.RULES)
    blocking = [w for name, w in WEIGHTS.items() if name not in rules.QUARANTINE_ONLY]
    assert max(blocking) < 0.5
    assert sum(sorted(blocking)[-2:]) < 0.8
    assert max(WEIGHTS.values()) < settings.FRAUD_BLOCK_THRESHOLD
    assert WEIGHTS["increment_persistence"] >= settings.FRAUD_QUARANTINE_THRESHOLD


# --- velocity budgets --------------------------------------------------------------------------
def test_budgets_come_from_the_action_types_range_and_play_time():
    # LEVEL_COMPLETION: 5 quick levels at 1,000, then one action per 3 x 3 s at 3/4 of 1..1000 (750.25).
    assert rules.budget_for(CONFIG, window=60, scope="LEVEL_COMPLETION") == (round(5000 + 750.25 * 60 / 9), 12)
    assert rules.budget_for(CONFIG, window=600, scope="LEVEL_COMPLETION") == (round(5000 + 750.25 * 600 / 9), 72)
    # ACHIEVEMENT_UNLOCK has no play time: one a second at most (375.25 typical, 500 at most).
    assert rules.budget_for(CONFIG, window=600, scope="ACHIEVEMENT_UNLOCK") == (2500 + round(375.25 * 600), 605)
    # All types together: 1.5 x the largest type's budget, its points in thousandths of each type's
    # maximum: ACHIEVEMENT_UNLOCK's 227,650 points are 455.3 maximum increments (of 500).
    assert rules.budget_for(CONFIG, window=600, scope=rules.TOTAL) == (round(1.5 * 455_300), 908)
    assert rules.budget_for(CONFIG, window=600, scope="UNKNOWN") is None


def test_velocity_budget_quiet_within_the_budget_and_grows_beyond_it():
    within = {(600, "LEVEL_COMPLETION"): (50_000, 40), (600, rules.TOTAL): (50_000, 40)}
    assert rules.velocity_budget(signals(velocity=within), CONFIG).contribution == 0
    over = {(600, "LEVEL_COMPLETION"): (66_000, 50)}  # budget 55,017 -> 1.2x
    finding = rules.velocity_budget(signals(velocity=over), CONFIG)
    assert 0.2 < finding.contribution < 0.5
    assert "66,000 points in 10 min for LEVEL_COMPLETION" in finding.reason
    assert "budget is 55,017" in finding.reason
    double = {(3600, "LEVEL_COMPLETION"): (620_000, 300)}  # budget 305,100
    assert rules.velocity_budget(signals(velocity=double), CONFIG).contribution == 1.0


LAPS = RuleConfig(
    action_types=rules.action_rules_from_settings(
        {
            "LEVEL_COMPLETION": {"min_increment": 1, "max_increment": 1000, "min_play_seconds": 3},
            "LAP_TIME": {"min_increment": 1000, "max_increment": 3_600_000, "min_play_seconds": 20},
        }
    )
)


def test_the_all_types_budget_counts_shares_of_each_types_maximum_not_raw_units():
    """A lap time in ms is not worth millions of points: all types together are counted in shares of
    each type's maximum increment, so the budget is that of the type a human can max out fastest
    (LEVEL_COMPLETION, 305.1 maximum increments an hour), not LAP_TIME's millions of ms, and laps of
    a few minutes each add little to it."""
    assert rules.budget_for(LAPS, window=3600, scope=rules.TOTAL) == (round(1.5 * 305_100), round(1.5 * 405))
    # 2.5x the level budget in an hour (two bots' worth on one account, say): caught on the total
    # too, which the old raw sum measured against 1.5x LAP_TIME's budget never was.
    farming = {(3600, rules.TOTAL): (2 * 457_650, 600)}
    finding = rules.velocity_budget(signals(velocity=farming), LAPS)
    assert finding.contribution == 1.0
    assert "points worth 915.3 maximum increments in 60 min over all action types" in finding.reason
    assert "budget is 457.6" in finding.reason
    # A keen human's hour of levels and twenty 3-minute laps (20 x 0.05 of LAP_TIME's maximum).
    human = {(3600, rules.TOTAL): (200_000 + 20 * 50, 320)}
    assert rules.velocity_budget(signals(velocity=human), LAPS).contribution == 0


def test_velocity_budget_counts_submissions_too():
    many_small = {(60, "LEVEL_COMPLETION"): (120, 24)}  # 24 submissions a minute, budget 12
    finding = rules.velocity_budget(signals(velocity=many_small), CONFIG)
    assert finding.contribution == 1.0
    assert "24 submissions in 1 min" in finding.reason


# --- population-relative increments ------------------------------------------------------------
def tails(**by_increment: float) -> dict[tuple[str, int], float]:
    return {("LEVEL_COMPLETION", int(k[1:])): v for k, v in by_increment.items()}


AT_THE_TOP = tails(i1000=0.005, i990=0.01, i899=0.1, i500=0.5, i100=0.9)


def test_gamma_tail_is_fishers_combination():
    assert rules.gamma_sf(1, 0.0) == 1.0
    assert abs(rules.gamma_sf(1, 2.0) - 0.1353) < 1e-3  # one Exp(1) above 2
    assert abs(rules.gamma_sf(3, 6.0) - 0.0620) < 1e-3


def test_three_increments_at_the_ceiling_in_a_row_are_persistent():
    finding = rules.increment_persistence(
        signals(score_increment=1000, recent=history(15, 20, increment=1000), increment_tails=AT_THE_TOP), CONFIG
    )
    assert finding.contribution == 1.0
    assert "1000 (top 0.5%), 1000 (top 0.5%), 1000 (top 0.5%)" in finding.reason
    assert "does this once in 8,000,000 runs" in finding.reason


def test_one_high_increment_among_ordinary_ones_is_not_persistent():
    recent = [*history(30, increment=100), *history(70, 40, 20, increment=500)[1:]]
    finding = rules.increment_persistence(
        signals(score_increment=1000, recent=recent, increment_tails=AT_THE_TOP), CONFIG
    )
    assert finding.contribution == 0
    # Nor does a low increment after high ones count (the current one must itself be high).
    low = rules.increment_persistence(
        signals(score_increment=500, recent=history(15, 20, increment=1000), increment_tails=AT_THE_TOP), CONFIG
    )
    assert low.contribution == 0


def test_just_under_the_fixed_ceiling_is_caught_by_persistence_within_a_few():
    """A bot that learned suspicious_increment (900) and scores 899, where players' increments put
    899 in their top 3% (6% for a player with a large-increment style): nothing at the 3rd, part of
    the rule at the 4th (1 in 77,000 runs), the whole rule at the 5th (1 in 1.3 million): mid-session
    a run is judged at 1 in 100,000 (a long session offers a new run at every level)."""
    population = tails(i899=0.03)

    def run(n: int, tails_: dict[tuple[str, int], float]) -> float:
        s = signals(score_increment=899, recent=history(*[15] * (n - 1), increment=899), increment_tails=tails_)
        return rules.increment_persistence(s, CONFIG).contribution

    assert run(3, population) == 0  # 0.06^3: a large-increment human does that once in ~4,600 runs
    assert 0 < run(4, population) < run(5, population) == 1.0
    # Where the population spreads evenly over the range (899 = top 10%, 20% for a style), six in
    # a row (1 in 15,600) are nothing, seven (1 in 78,000) part of the rule, eight (1 in 390,000) all.
    assert run(6, AT_THE_TOP) == 0
    assert 0 < run(7, AT_THE_TOP) < run(8, AT_THE_TOP) == 1.0


def test_the_ceiling_is_judged_as_it_is_below_it_the_style_factor_applies():
    """Three perfect levels in a row mid-session where 3% of players' levels are perfect: 1 in 37,000
    runs (a little of the rule), four: 1 in 1.2 million (all of it); three levels at 990 where 3% of
    levels are that high: a high-scoring style does that 8 times as often (1 in 4,600): nothing."""
    at_ceiling = tails(i1000=0.03)
    three = rules.increment_persistence(
        signals(score_increment=1000, recent=history(15, 20, increment=1000), increment_tails=at_ceiling), CONFIG
    )
    assert 0 < three.contribution < 0.3
    assert "once in 37,037 runs" in three.reason
    four = rules.increment_persistence(
        signals(score_increment=1000, recent=history(15, 20, 15, increment=1000), increment_tails=at_ceiling), CONFIG
    )
    assert four.contribution == 1.0
    near = tails(i990=0.03)
    below = rules.increment_persistence(
        signals(score_increment=990, recent=history(15, 20, increment=990), increment_tails=near), CONFIG
    )
    assert below.contribution == 0


def test_retries_of_the_current_action_are_not_counted():
    """A retry (same action id after a 503) is neither a second action nor a second high increment."""
    retry = Attempt(
        submitted_at=NOW - 2, action_timestamp=int(NOW), action_type="LEVEL_COMPLETION", score_increment=1000,
        action_id="current00000",
    )  # fmt: skip
    s = signals(score_increment=1000, recent=[retry] * 6, increment_tails=AT_THE_TOP)
    assert rules.increment_persistence(s, CONFIG).contribution == 0
    assert rules.rapid_succession(s, CONFIG).contribution == 0
    assert rules.timing_regularity(s, CONFIG).contribution == 0
    assert rules.min_play_time(s, CONFIG).contribution == 0
    assert (
        rules.assess(s, CONFIG, WEIGHTS).risk_score == rules.assess(replace(s, recent=[]), CONFIG, WEIGHTS).risk_score
    )


# --- the opening run ---------------------------------------------------------------------------
def spacing(**by_seconds: float) -> Callable[[str, float], float]:
    """A spacing sketch as a step function: the share of players' gaps at or below each gap."""
    steps = sorted((float(k[1:]), v) for k, v in by_seconds.items())

    def gap_tail(action_type: str, seconds: float) -> float:
        return next((v for limit, v in steps if seconds <= limit), 1.0)

    return gap_tail


# Players' increments as the full simulation's sketch has them (3% perfect levels), and spacing:
# 5% of players' gaps are under 4 s, 25% under 8 s, 45% under 15 s, 70% under 40 s.
HUMAN_TOP = tails(i1000=0.031, i990=0.035, i960=0.05, i950=0.058, i930=0.07, i910=0.085, i700=0.3, i300=0.7)
HUMAN_SPACING = spacing(s4=0.05, s8=0.25, s15=0.45, s40=0.7)


def opening(*increments_and_gaps: tuple[int, float], now_increment: int, **overrides: object) -> Signals:
    """The current attempt (``now_increment``) after earlier ones, newest first, each given as
    (increment, seconds before the next)."""
    recent, t = [], NOW
    for i, (increment, gap) in enumerate(increments_and_gaps):
        t -= gap
        recent.append(
            Attempt(
                submitted_at=t,
                action_timestamp=int(t),
                action_type="LEVEL_COMPLETION",
                score_increment=increment,
                action_id=f"o{i:011d}",
            )
        )
    base = {"score_increment": now_increment, "recent": recent, "increment_tails": HUMAN_TOP, "gap_tail": HUMAN_SPACING}
    return signals(**{**base, **overrides})


def test_an_opening_of_three_high_levels_at_a_steady_pace_is_a_bot_by_its_third():
    """A jittered bot (900-1,000 every 5-9 s): its third valid submission. 930, 960, 910 at 7 s:
    (top 8.5%)^3 x (quickest 25%)^2 = 1 in 26,000 sessions -> the whole rule (quarantine alone)."""
    s = opening((960, 7), (930, 7), now_increment=910)
    finding = rules.opening_run(s, CONFIG)
    assert finding.contribution == 1.0
    shown = "first 3 LEVEL_COMPLETION actions of the hour: 930 (top 7.0%), 960 (top 5.0%), 910 (top 8.5%)"
    assert shown in finding.reason
    assert "7s (quickest 25%), 7s (quickest 25%) apart" in finding.reason
    verdict = rules.assess(s, CONFIG, WEIGHTS)
    assert verdict.risk_score >= settings.FRAUD_QUARANTINE_THRESHOLD
    assert verdict.blocking_score < settings.FRAUD_BLOCK_THRESHOLD  # hidden, never refused on statistics


def test_two_perfect_levels_quickly_are_an_opening_a_bot_makes():
    """Two levels at the ceiling 6 s apart (a naive or adaptive bot's 2nd): 0.031^2 x 0.25 = 1 in 4,200."""
    finding = rules.opening_run(opening((1000, 6), now_increment=1000), CONFIG)
    assert finding.contribution == 1.0


def test_a_keen_humans_two_lucky_first_levels_are_not_enough():
    """A perfect level then a 950 twelve seconds later: (top 5.8%)^2 x 45% = 1 in 660 sessions: a
    little of the rule — with the jump rule beside it not even a flag (nor with the spacing unknown).
    Two perfect levels in a row, though, where 3% of levels are perfect, are 1 in 1,100 sessions
    before the spacing: at 30 s apart (1 in 1,500) the player is quarantined — the price of stopping
    bots at their 2nd submission (fraud/README.md: about 1 in 1,000 human sessions)."""
    lucky = opening((1000, 12), now_increment=950)
    assert rules.opening_run(lucky, CONFIG).contribution < 0.3
    assert rules.assess(lucky, CONFIG, WEIGHTS).risk_score < settings.FRAUD_FLAG_THRESHOLD
    assert rules.opening_run(opening((1000, 12), now_increment=950, gap_tail=None), CONFIG).contribution == 0
    perfect = opening((1000, 30), now_increment=1000)
    assert rules.assess(perfect, CONFIG, WEIGHTS).risk_score >= settings.FRAUD_QUARANTINE_THRESHOLD


def test_an_opening_with_one_ordinary_level_or_a_fourth_level_is_not_judged():
    """Every level of the opening must be in the top 20%; from the 4th action of the type on, the
    mid-session rule (increment_persistence) judges runs instead."""
    assert rules.opening_run(opening((700, 6), (1000, 6), now_increment=1000), CONFIG).contribution == 0
    assert rules.opening_run(opening((1000, 6), (1000, 6), (1000, 6), now_increment=1000), CONFIG).contribution == 0
    assert rules.opening_run(opening(now_increment=1000), CONFIG).contribution == 0  # one action is no run


def test_spacing_makes_the_difference_between_a_keen_human_and_a_bot():
    """The same two levels (960, 930: top 7%): 40 s apart 1 in 290 sessions (nothing), 3 s apart
    1 in 4,100 (all of the rule)."""
    slow = rules.opening_run(opening((960, 40), now_increment=930), CONFIG).contribution
    fast = rules.opening_run(opening((960, 3), now_increment=930), CONFIG).contribution
    assert slow == 0
    assert fast == 1.0


def test_the_opening_ignores_retries_and_other_action_types():
    retry = Attempt(
        submitted_at=NOW - 2, action_timestamp=int(NOW), action_type="LEVEL_COMPLETION", score_increment=1000,
        action_id="current00000",
    )  # fmt: skip
    assert rules.opening_run(opening(now_increment=1000, recent=[retry] * 2), CONFIG).contribution == 0
    other = [replace(a, action_type="ACHIEVEMENT_UNLOCK") for a in opening((1000, 5), now_increment=1000).recent]
    assert rules.opening_run(opening(now_increment=1000, recent=other), CONFIG).contribution == 0


# --- account clusters --------------------------------------------------------------------------
def cluster(accounts: int, submissions: int, tail_sum: float) -> rules.ClusterView:
    return rules.ClusterView(
        kind="address", key="198.18.0.1", accounts=accounts, submissions=submissions, tail_sum=tail_sum
    )


def test_a_farm_at_the_ceiling_on_one_address_is_a_cluster():
    farm = cluster(accounts=6, submissions=8, tail_sum=8 * 5.3)
    finding = rules.account_cluster(signals(score_increment=1000, increment_tails=AT_THE_TOP, clusters=[farm]), CONFIG)
    assert finding.contribution == 1.0
    assert "6 accounts scored 8 times from address 198.18.0.1" in finding.reason


def test_a_big_nat_with_a_slightly_miscalibrated_sketch_is_not_a_cluster():
    """800 submissions averaging -ln(tail) 1.3 (the sketch a little off) give a tiny p-value in
    total; the mean is what tells a farm (~5) from people (~1)."""
    nat = cluster(accounts=60, submissions=800, tail_sum=800 * 1.3)
    finding = rules.account_cluster(signals(score_increment=1000, increment_tails=AT_THE_TOP, clusters=[nat]), CONFIG)
    assert finding.contribution == 0


def test_a_nat_of_humans_is_not_a_cluster_however_many():
    """Carrier NAT: 40 accounts, each increment as typical as the population's (-ln tail averages 1)."""
    nat = cluster(accounts=40, submissions=200, tail_sum=200 * 1.0)
    finding = rules.account_cluster(signals(score_increment=1000, increment_tails=AT_THE_TOP, clusters=[nat]), CONFIG)
    assert finding.contribution == 0


def test_a_human_behind_the_farms_address_is_not_judged_by_the_farm():
    farm = cluster(accounts=6, submissions=8, tail_sum=8 * 5.3)
    recent = history(30, 60, 45, 50, increment=100)
    finding = rules.account_cluster(
        signals(score_increment=500, recent=recent, increment_tails=AT_THE_TOP, clusters=[farm]), CONFIG
    )
    assert finding.contribution == 0


def test_two_accounts_are_not_a_cluster():
    pair = cluster(accounts=2, submissions=6, tail_sum=6 * 5.3)
    assert (
        rules.account_cluster(
            signals(score_increment=1000, increment_tails=AT_THE_TOP, clusters=[pair]), CONFIG
        ).contribution
        == 0
    )


def test_statistical_rules_can_quarantine_but_never_block_alone():
    """increment_persistence and account_cluster hide a player (reversible); blocking needs the rest."""
    from fraud import services as fraud_services

    farm = cluster(accounts=6, submissions=8, tail_sum=8 * 5.3)
    s = signals(
        score_increment=1000, recent=history(15, 20, increment=1000), increment_tails=AT_THE_TOP, clusters=[farm]
    )
    verdict = rules.assess(s, CONFIG, WEIGHTS)
    assert verdict.risk_score >= settings.FRAUD_BLOCK_THRESHOLD  # jump + persistence + cluster: 1.0
    assert verdict.blocking_score < settings.FRAUD_QUARANTINE_THRESHOLD  # the jump alone: 0.3
    assert verdict.statistical
    assert fraud_services._decision(verdict.risk_score, verdict.blocking_score, True) == fraud_services.QUARANTINE


def test_the_fixed_threshold_rules_alone_flag_or_block_but_never_quarantine():
    """Eight updates in a minute and a perfect level (0.35 + 0.3): what a keen human does; a flag."""
    from fraud import services as fraud_services

    s = signals(score_increment=1000, recent=history(7, 6, 9, 5, 8, 10, 9, increment=300))
    verdict = rules.assess(s, CONFIG, WEIGHTS)
    assert {f.rule for f in verdict.fired} == {"rapid_succession", "impossible_score_jump"}
    assert settings.FRAUD_QUARANTINE_THRESHOLD <= verdict.risk_score < settings.FRAUD_BLOCK_THRESHOLD
    assert not verdict.statistical
    assert fraud_services._decision(verdict.risk_score, verdict.blocking_score, False) == fraud_services.FLAG


def test_run_probability_takes_the_rarest_run():
    assert rules.run_probability([0.05, 0.05, 0.05]) == (0.05**3, 3)
    p, run = rules.run_probability([0.01, 0.01, 0.5, 0.5])
    assert run == 2 and abs(p - 1e-4) < 1e-12
    assert rules.run_probability([0.01]) == (1.0, 0)  # one increment is never a run
