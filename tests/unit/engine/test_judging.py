"""Judging an experiment: the posterior numbers against scipy and Monte Carlo, each clause of the
stopping rule, and a simulation of the rule's decisions over repeated looks."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import numpy as np
import pytest
from scipy import stats

from nurture.domain.experiments import StoppingRule
from nurture.engine.judging import ArmCounts, ArmResult, Judgement, judge

RULE = StoppingRule()
LONG_ENOUGH = timedelta(days=30)
DRAWS = 200_000


def _draws(rng: np.random.Generator, arms: list[ArmCounts]) -> np.ndarray:
    return np.stack([rng.beta(1 + arm.converted, 1 + arm.exposed - arm.converted, DRAWS) for arm in arms])


def _arm(judgement: Judgement, key: str) -> ArmResult:
    return next(arm for arm in judgement.arms if arm.key == key)


def test_the_interval_is_the_posterior_2_5_and_97_5_percent_quantiles() -> None:
    arms = [ArmCounts("a", 1234, 61), ArmCounts("b", 0, 0), ArmCounts("c", 40, 40)]
    judgement = judge(arms, ArmCounts("holdout", 300, 9), RULE, LONG_ENOUGH)
    assert judgement.holdout is not None
    for arm, result in zip([*arms, ArmCounts("holdout", 300, 9)], [*judgement.arms, judgement.holdout],
                           strict=True):
        posterior = stats.beta(1 + arm.converted, 1 + arm.exposed - arm.converted)
        assert result.interval.low == pytest.approx(posterior.ppf(0.025), abs=1e-12)
        assert result.interval.high == pytest.approx(posterior.ppf(0.975), abs=1e-12)
    assert _arm(judgement, "a").rate == pytest.approx(61 / 1234)
    assert _arm(judgement, "b").rate == 0.0


@pytest.mark.parametrize("counts", [
    [(2000, 100), (2000, 120)],
    [(1750, 90), (1750, 80), (1800, 95)],
    [(6000, 240), (6000, 300), (5000, 260), (100, 7)],
    [(0, 0), (30, 2)],
])
def test_p_best_sums_to_one(counts: list[tuple[int, int]]) -> None:
    arms = [ArmCounts(f"v{i}", n, k) for i, (n, k) in enumerate(counts)]
    judgement = judge(arms, None, RULE, LONG_ENOUGH)
    p_best = [arm.p_best for arm in judgement.arms]
    assert all(p is not None and 0.0 <= p <= 1.0 for p in p_best)
    assert sum(p for p in p_best if p is not None) == pytest.approx(1.0, abs=1e-6)


def test_identical_arms_are_each_best_half_the_time() -> None:
    judgement = judge([ArmCounts("a", 3000, 150), ArmCounts("b", 3000, 150)], None, RULE, LONG_ENOUGH)
    assert [arm.p_best for arm in judgement.arms] == [pytest.approx(0.5, abs=1e-6)] * 2
    assert _arm(judgement, "a").expected_loss == pytest.approx(_arm(judgement, "b").expected_loss, abs=1e-12)


@pytest.mark.parametrize("counts", [
    [(2000, 100), (2000, 125)],
    [(1750, 90), (1750, 80)],
    [(40, 1), (6000, 30)],  # a flat posterior against a sharp one
    [(1750, 90), (1750, 80), (1800, 95)],
    [(6000, 240), (6000, 300), (5000, 260), (900, 50)],
])
def test_p_best_and_expected_loss_agree_with_monte_carlo(counts: list[tuple[int, int]]) -> None:
    arms = [ArmCounts(f"v{i}", n, k) for i, (n, k) in enumerate(counts)]
    judgement = judge(arms, None, RULE, LONG_ENOUGH)
    draws = _draws(np.random.default_rng(20260501), arms)
    best = draws.argmax(axis=0)
    loss = draws.max(axis=0) - draws
    for i, result in enumerate(judgement.arms):
        # 3e-3 is about three Monte Carlo standard errors at p = 0.5; the loss's is its standard
        # deviation over √200,000.
        assert result.p_best == pytest.approx(np.mean(best == i), abs=3e-3)
        tolerance = 4 * loss[i].std() / DRAWS**0.5 + 1e-7
        assert result.expected_loss == pytest.approx(loss[i].mean(), abs=tolerance)


def test_two_arms_p_a_above_b_agrees_with_monte_carlo_within_0_001() -> None:
    a, b = ArmCounts("a", 2500, 130), ArmCounts("b", 2400, 112)
    judgement = judge([a, b], None, RULE, LONG_ENOUGH)
    draws = _draws(np.random.default_rng(7), [a, b])
    assert _arm(judgement, "a").p_best == pytest.approx(np.mean(draws[0] > draws[1]), abs=1e-3)
    # Averaging the exact P(a > b | b) over draws of b leaves a far smaller Monte Carlo error.
    conditional = stats.beta(131, 2371).sf(draws[1])
    tolerance = 4 * conditional.std() / DRAWS**0.5
    assert _arm(judgement, "a").p_best == pytest.approx(conditional.mean(), abs=tolerance)


def test_the_holdout_is_compared_but_never_a_candidate() -> None:
    variants = [ArmCounts("a", 3000, 150), ArmCounts("b", 3000, 210)]
    holdout = ArmCounts("holdout", 600, 24)
    judgement = judge(variants, holdout, RULE, LONG_ENOUGH)
    assert judgement.holdout is not None
    assert judgement.holdout.p_best is None and judgement.holdout.expected_loss is None
    assert judgement.holdout.p_beats_holdout is None
    draws = _draws(np.random.default_rng(11), [*variants, holdout])
    for i, key in enumerate("ab"):
        assert _arm(judgement, key).p_beats_holdout == pytest.approx(np.mean(draws[i] > draws[2]), abs=1e-3)
    assert sum(arm.p_best or 0.0 for arm in judgement.arms) == pytest.approx(1.0, abs=1e-6)
    assert judge(variants, None, RULE, LONG_ENOUGH).arms[0].p_beats_holdout is None


def test_guardrails_compare_each_variant_with_the_others() -> None:
    a = ArmCounts("a", 3000, 150, unsubscribed=9, paused=3)
    b = ArmCounts("b", 3000, 150, unsubscribed=30, paused=3)
    judgement = judge([a, b], None, RULE, LONG_ENOUGH)
    unsubscribes = _arm(judgement, "b").guardrails["unsubscribed"]
    assert unsubscribes.rate == pytest.approx(0.01)
    rng = np.random.default_rng(3)
    reference = np.mean(rng.beta(31, 2971, DRAWS) > rng.beta(10, 2992, DRAWS))
    assert unsubscribes.p_worse == pytest.approx(reference, abs=1e-3)
    assert _arm(judgement, "a").guardrails["paused"].p_worse == pytest.approx(0.5, abs=1e-6)
    alone = judge([a], None, RULE, LONG_ENOUGH).arms[0]
    assert alone.guardrails["unsubscribed"].p_worse == 0.0 and alone.p_best == 1.0


def test_nobody_exposed_has_no_leader() -> None:
    judgement = judge([ArmCounts("a", 0, 0), ArmCounts("b", 0, 0)], None, RULE, LONG_ENOUGH)
    assert judgement.leader is None and judgement.winner is None
    assert "nobody" in judgement.reason


# A clear winner that each test below spoils in one way only.
CLEAR = [ArmCounts("a", 4000, 160, 12, 4), ArmCounts("b", 4000, 260, 12, 4)]


def test_a_clear_result_declares_the_winner() -> None:
    judgement = judge(CLEAR, ArmCounts("holdout", 800, 30), RULE, LONG_ENOUGH)
    assert (judgement.leader, judgement.winner) == ("b", "b")
    assert judgement.reason.startswith("b wins")


def test_too_few_people_block_the_winner() -> None:
    few = [replace(CLEAR[0], exposed=412, converted=16, unsubscribed=1, paused=0), CLEAR[1]]
    judgement = judge(few, None, RULE, LONG_ENOUGH)
    assert judgement.winner is None
    assert judgement.reason == "needs 1,000 people judged per variant; the smallest (a) has 412"


def test_too_short_a_run_blocks_the_winner() -> None:
    judgement = judge(CLEAR, None, RULE, timedelta(days=3))
    assert (judgement.leader, judgement.winner) == ("b", None)
    assert judgement.reason == "running 3 days of the 7 required"


def test_a_low_probability_of_being_best_blocks_the_winner() -> None:
    close = [CLEAR[0], replace(CLEAR[1], converted=175)]
    judgement = judge(close, None, RULE, LONG_ENOUGH)
    assert (judgement.leader, judgement.winner) == ("b", None)
    p_best = _arm(judgement, "b").p_best
    assert p_best is not None and p_best < 0.95
    assert judgement.reason == f"no variant is best with 95% probability yet (b: {int(p_best * 100)}%)"


def test_a_high_expected_loss_blocks_the_winner() -> None:
    # P(best) is over 95%, but choosing b still risks more than the rule allows.
    close = [CLEAR[0], replace(CLEAR[1], converted=196)]
    judgement = judge(close, None, RULE, LONG_ENOUGH)
    b = _arm(judgement, "b")
    assert b.p_best is not None and b.p_best >= 0.95
    assert judgement.winner is None
    assert "could still cost" in judgement.reason and "of its conversions" in judgement.reason
    loose = replace(RULE, max_expected_loss=0.01)
    assert judge(close, None, loose, LONG_ENOUGH).winner == "b"


@pytest.mark.parametrize(("guardrail", "words"), [("unsubscribed", "unsubscribes"), ("paused", "pauses")])
def test_a_clearly_worse_guardrail_blocks_the_winner(guardrail: str, words: str) -> None:
    worse = [CLEAR[0], replace(CLEAR[1], unsubscribed=60) if guardrail == "unsubscribed"
             else replace(CLEAR[1], paused=60)]
    judgement = judge(worse, None, RULE, LONG_ENOUGH)
    assert (judgement.leader, judgement.winner) == ("b", None)
    assert judgement.reason == f"b leads but its {words} are clearly higher than a's"


# The decision-rule simulation: people arrive at PER_DAY per variant, the judge looks every
# LOOK_EVERY new people per variant from min_exposed on, up to HORIZON. Unsubscribes and pauses
# happen at the same rate in both variants, so a guardrail can only block by chance.
PER_DAY = 250
LOOK_EVERY = 250
HORIZON = 6000
EXPERIMENTS = 200
UNSUBSCRIBE, PAUSE = 0.005, 0.002
SEED = 20260502


def _first_winner(rng: np.random.Generator, rates: tuple[float, float], rule: StoppingRule) -> str | None:
    converted, unsubscribed, paused = np.zeros(2, np.int64), np.zeros(2, np.int64), np.zeros(2, np.int64)
    exposed = 0
    while exposed < HORIZON:
        step = rule.min_exposed if exposed == 0 else LOOK_EVERY
        exposed += step
        converted += rng.binomial(step, rates)
        unsubscribed += rng.binomial(step, UNSUBSCRIBE, 2)
        paused += rng.binomial(step, PAUSE, 2)
        arms = [ArmCounts(key, exposed, int(converted[i]), int(unsubscribed[i]), int(paused[i]))
                for i, key in enumerate("ab")]
        winner = judge(arms, None, rule, timedelta(days=exposed / PER_DAY)).winner
        if winner is not None:
            return winner
    return None


def simulate(seed: int, rule: StoppingRule = RULE) -> tuple[int, int, int]:
    """Of EXPERIMENTS each: lift 4% vs 6% with the better variant picked, A/A 5% and A/A 4% with a
    (false) winner declared."""
    rng = np.random.default_rng(seed)
    picked = sum(_first_winner(rng, (0.04, 0.06), rule) == "b" for _ in range(EXPERIMENTS))
    false_5 = sum(_first_winner(rng, (0.05, 0.05), rule) is not None for _ in range(EXPERIMENTS))
    false_4 = sum(_first_winner(rng, (0.04, 0.04), rule) is not None for _ in range(EXPERIMENTS))
    return picked, false_5, false_4


def test_the_default_rule_picks_real_winners_and_rarely_false_ones() -> None:
    picked, false_5, false_4 = simulate(SEED)
    print(f"\ndecision rule: lift 4% vs 6% -> better variant picked in {picked}/{EXPERIMENTS} "
          f"({picked / EXPERIMENTS:.1%}); A/A 5% vs 5% -> false winner in {false_5}/{EXPERIMENTS} "
          f"({false_5 / EXPERIMENTS:.1%}); A/A 4% vs 4% -> false winner in {false_4}/{EXPERIMENTS} "
          f"({false_4 / EXPERIMENTS:.1%})")
    assert picked >= 0.95 * EXPERIMENTS
    assert false_5 <= 0.05 * EXPERIMENTS
    assert false_4 <= 0.05 * EXPERIMENTS
