"""Judging an experiment on a step: Beta-Binomial posteriors of each arm's conversion and guardrail
rates, the probability that each variant is best, and whether the stopping rule declares a winner."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import numpy.typing as npt
from scipy.special import betainc, betaincinv, betaln

from nurture.domain.experiments import GUARDRAILS, StoppingRule

Floats = npt.NDArray[np.float64]

_TAIL = 1e-10
"""Each posterior is integrated from this quantile to one minus it: the mass left out is far below
the precision the rule needs."""
_POINTS = 41
"""Simpson points per piece of grid (odd): the integrals then err by under 1e-6 even with no
conversion at all, and by under 1e-7 once the posteriors look like bells."""
_QUANTILES = np.array([_TAIL, 1e-3, 0.025, 0.1, 0.5, 0.9, 0.975, 1.0 - 1e-3, 1.0 - _TAIL])
_CUTS = [0, 1, 3, 4, 5, 7, 8]
"""Where a posterior's grid is cut into pieces: between these quantiles even the density of a
posterior with no conversion yet, which falls from its highest at zero, is smooth."""
_INTERVAL = [2, 6]
_SHARPER = 0.25
"""A posterior whose range is under this share of another's gets grid pieces of its own there."""


@dataclass(frozen=True)
class ArmCounts:
    """What happened to the people of one arm whose conversion window has fully elapsed."""

    key: str
    exposed: int
    converted: int
    unsubscribed: int = 0
    paused: int = 0

    def count(self, outcome: str) -> int:
        counts = {"converted": self.converted, "unsubscribed": self.unsubscribed, "paused": self.paused}
        return counts[outcome]


@dataclass(frozen=True)
class Interval:
    low: float
    high: float


@dataclass(frozen=True)
class GuardrailResult:
    rate: float
    """The observed share, 0.0 when nobody was exposed."""
    p_worse: float
    """The highest probability, over the other variants, that this arm's rate is above theirs;
    0.0 when there is no other variant."""


@dataclass(frozen=True)
class ArmResult:
    key: str
    exposed: int
    converted: int
    rate: float
    interval: Interval
    """The 95% equal-tailed credible interval of the conversion rate."""
    p_best: float | None
    """None for the holdout, which is never a candidate."""
    expected_loss: float | None
    """What choosing this variant costs on average, in absolute conversion rate, against the best."""
    p_beats_holdout: float | None
    guardrails: dict[str, GuardrailResult]


@dataclass(frozen=True)
class Judgement:
    arms: tuple[ArmResult, ...]
    holdout: ArmResult | None
    leader: str | None
    winner: str | None
    reason: str
    """One sentence for the marketer: why this winner, or what is still missing."""


@dataclass(frozen=True)
class _Posteriors:
    """The Beta posteriors of some arms for one outcome. Arm i has its own grid, `x[i]`, over the
    range where its density `pdf[i]` has its mass; `cdf[i][j]` is arm j's CDF on it. An integral
    against arm i's density is then a Simpson sum on arm i's grid alone."""

    a: Floats
    b: Floats
    x: list[Floats]
    pdf: list[Floats]
    cdf: list[Floats]
    weights: list[Floats]
    interval: Floats

    def integral(self, i: int, values: Floats) -> float:
        """∫ f_i(x) values(x) dx, `values` given on arm i's grid."""
        return float(np.dot(self.weights[i], self.pdf[i] * values))

    def p_above(self, i: int, j: int) -> float:
        """P(p_i > p_j) = ∫ f_i F_j."""
        return self.integral(i, self.cdf[i][j])


_SIMPSON = np.ones(_POINTS)
_SIMPSON[1:-1:2] = 4.0
_SIMPSON[2:-1:2] = 2.0


def _grid(i: int, quantiles: Floats) -> tuple[Floats, Floats]:
    """Arm i's grid and Simpson weights: uniform pieces between its quantiles, so that a skewed
    posterior (no conversion yet) is as finely covered as a bell, and a piece of its own for each
    much sharper posterior inside its range, whose CDF would otherwise rise between two points."""
    low, high = quantiles[i, 0], quantiles[i, -1]
    sharper = quantiles[quantiles[:, -1] - quantiles[:, 0] < (high - low) * _SHARPER][:, _CUTS].ravel()
    edges = np.unique(np.concatenate([quantiles[i, _CUTS], sharper[(sharper > low) & (sharper < high)]]))
    x = np.linspace(edges[:-1], edges[1:], _POINTS, axis=1).ravel()
    weights = (_SIMPSON[None, :] * (np.diff(edges) / (3.0 * (_POINTS - 1)))[:, None]).ravel()
    return x, weights


def _posteriors(arms: Sequence[ArmCounts], outcome: str) -> _Posteriors:
    a = np.array([1.0 + arm.count(outcome) for arm in arms])
    b = np.array([1.0 + arm.exposed - arm.count(outcome) for arm in arms])
    quantiles = np.asarray(betaincinv(a[:, None], b[:, None], _QUANTILES[None, :]), dtype=np.float64)
    grids = [_grid(i, quantiles) for i in range(len(arms))]
    pdfs: list[Floats] = []
    cdfs: list[Floats] = []
    for i, (x, _) in enumerate(grids):
        with np.errstate(divide="ignore", invalid="ignore"):
            log_pdf = (a[i] - 1.0) * np.log(x) + (b[i] - 1.0) * np.log1p(-x) - betaln(a[i], b[i])
        # With a = 1 at x = 0 (or b = 1 at x = 1) the density is finite but 0 · log 0 is nan; the
        # other term is 0 there.
        pdfs.append(np.exp(np.where(np.isnan(log_pdf), -betaln(a[i], b[i]), log_pdf)))
        cdfs.append(np.asarray(betainc(a[:, None], b[:, None], x[None, :]), dtype=np.float64))
    return _Posteriors(a, b, [x for x, _ in grids], pdfs, cdfs, [w for _, w in grids],
                       quantiles[:, _INTERVAL])


def _p_best(post: _Posteriors, count: int) -> Floats:
    """P(best_i) = ∫ f_i Π_{j≠i} F_j among the first `count` arms."""
    if count == 1:
        return np.ones(1)
    p = [post.integral(i, np.prod(np.delete(post.cdf[i][:count], i, axis=0), axis=0)) for i in range(count)]
    return np.clip(np.array(p, dtype=np.float64), 0.0, 1.0)


def _expected_max(post: _Posteriors, count: int) -> float:
    """E[max_j p_j] = Σ_i E[p_i; i is best] = Σ_i ∫ x f_i Π_{j≠i} F_j among the first `count` arms."""
    return sum(
        post.integral(i, post.x[i] * np.prod(np.delete(post.cdf[i][:count], i, axis=0), axis=0))
        for i in range(count)
    )


def _rate(count: int, exposed: int) -> float:
    return count / exposed if exposed > 0 else 0.0


def _guardrails(variants: Sequence[ArmCounts], holdout: ArmCounts | None) -> list[dict[str, GuardrailResult]]:
    arms = [*variants, *([holdout] if holdout is not None else [])]
    results: list[dict[str, GuardrailResult]] = [{} for _ in arms]
    for name in GUARDRAILS:
        post = _posteriors(arms, name)
        for i, arm in enumerate(arms):
            # The holdout is measured against the variants; a variant against the other variants.
            rivals = [j for j in range(len(variants)) if j != i]
            p_worse = max((post.p_above(i, j) for j in rivals), default=0.0)
            results[i][name] = GuardrailResult(_rate(arm.count(name), arm.exposed), min(p_worse, 1.0))
    return results


def _span(duration: timedelta) -> str:
    if duration >= timedelta(days=1):
        days = duration / timedelta(days=1)
        return f"{days:.0f} day{'s' if round(days) != 1 else ''}"
    hours = duration / timedelta(hours=1)
    return f"{hours:.0f} hour{'s' if round(hours) != 1 else ''}"


def _floor_percent(p: float) -> str:
    # Floored, so that 94.7% short of a 95% bar never reads as 95%.
    return f"{math.floor(p * 100 + 1e-9):.0f}%"


def _relative_loss(arm: ArmResult) -> float:
    """The expected loss as a share of the arm's posterior mean rate: the rule's scale, so that one
    threshold means the same at a 1% and at a 10% conversion rate."""
    assert arm.expected_loss is not None
    return arm.expected_loss * (arm.exposed + 2) / (arm.converted + 1)


def _blocker(variants: Sequence[ArmCounts], arms: Sequence[ArmResult], leader: ArmResult,
             rule: StoppingRule, running_for: timedelta) -> str | None:
    """Why the leader may not win yet, or None when it may."""
    smallest = min(variants, key=lambda arm: arm.exposed)
    if smallest.exposed < rule.min_exposed:
        return (f"needs {rule.min_exposed:,} people judged per variant; "
                f"the smallest ({smallest.key}) has {smallest.exposed:,}")
    if running_for < rule.min_duration:
        required, running = _span(rule.min_duration), _span(running_for)
        if required.rstrip("s").split()[1] == running.rstrip("s").split()[1]:
            required = required.split()[0]  # "running 3 days of the 7 required"
        return f"running {running} of the {required} required"
    assert leader.p_best is not None and leader.expected_loss is not None
    if leader.p_best < rule.p_best:
        return (f"no variant is best with {rule.p_best:.0%} probability yet "
                f"({leader.key}: {_floor_percent(leader.p_best)})")
    if _relative_loss(leader) >= rule.max_expected_loss:
        return (f"{leader.key} is best with {_floor_percent(leader.p_best)} probability, but choosing it "
                f"could still cost {_relative_loss(leader):.4%} of its conversions "
                f"(the limit is {rule.max_expected_loss:.4%})")
    for name in GUARDRAILS:
        if leader.guardrails[name].p_worse >= rule.guardrail_p_worse:
            rival = _clearly_better(arms, leader, name)
            return f"{leader.key} leads but its {_GUARDRAIL_WORDS[name]} are clearly higher than {rival}'s"
    return None


_GUARDRAIL_WORDS = {"unsubscribed": "unsubscribes", "paused": "pauses"}


def _clearly_better(arms: Sequence[ArmResult], leader: ArmResult, name: str) -> str:
    """The variant whose guardrail rate is furthest below the leader's: the one it is worse than."""
    others = [arm for arm in arms if arm.key != leader.key]
    return min(others, key=lambda arm: arm.guardrails[name].rate).key


def _holdout_result(holdout: ArmCounts, post: _Posteriors,
                    guardrails: dict[str, GuardrailResult]) -> ArmResult:
    low, high = post.interval[-1]
    return ArmResult(holdout.key, holdout.exposed, holdout.converted,
                     _rate(holdout.converted, holdout.exposed), Interval(float(low), float(high)),
                     None, None, None, guardrails)


def judge(variants: Sequence[ArmCounts], holdout: ArmCounts | None, rule: StoppingRule,
          running_for: timedelta) -> Judgement:
    """Judge the variants of a step (and its holdout, if any) by the stopping rule."""
    if not variants:
        return Judgement((), None, None, None, "there is no variant to judge")
    every = [*variants, *([holdout] if holdout is not None else [])]
    post = _posteriors(every, "converted")
    count = len(variants)
    p_best = _p_best(post, count)
    expected_max = _expected_max(post, count)
    means = post.a / (post.a + post.b)
    guardrails = _guardrails(variants, holdout)
    arms = tuple(
        ArmResult(
            arm.key, arm.exposed, arm.converted, _rate(arm.converted, arm.exposed),
            Interval(float(post.interval[i, 0]), float(post.interval[i, 1])),
            float(p_best[i]), max(expected_max - float(means[i]), 0.0),
            post.p_above(i, count) if holdout is not None else None,
            guardrails[i],
        )
        for i, arm in enumerate(variants)
    )
    held = _holdout_result(holdout, post, guardrails[count]) if holdout is not None else None
    if sum(arm.exposed for arm in variants) == 0:
        return Judgement(arms, held, None, None, "nobody has been judged yet: "
                         "people count once their conversion window has elapsed")
    leader = arms[int(np.argmax(p_best))]
    blocker = _blocker(variants, arms, leader, rule, running_for)
    if blocker is not None:
        return Judgement(arms, held, leader.key, None, blocker)
    assert leader.p_best is not None and leader.expected_loss is not None
    reason = (f"{leader.key} wins: it is best with {_floor_percent(leader.p_best)} probability, choosing it "
              f"risks {_relative_loss(leader):.4%} of its conversions, and no guardrail is clearly worse")
    return Judgement(arms, held, leader.key, leader.key, reason)
