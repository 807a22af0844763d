"""Experiments inside a sequence: the variants of a step, the holdout, what counts as a conversion,
and the rule that ends the test. Frozen data only; reading them from files is `content.experiments`,
assigning people is `engine.assignment`, judging the results is `engine.judging`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

HOLDOUT = "holdout"
"""The arm of the people who skip the step: it answers whether the step helps at all."""
DEFAULT_WINDOW = timedelta(days=7)
"""How long after a send a conversion counts for it, unless the experiment says."""
GUARDRAILS: tuple[str, ...] = ("unsubscribed", "paused")
"""What an experiment watches besides its metric: a variant that drives people away never wins."""


@dataclass(frozen=True)
class Variant:
    """One version of a step. A field left out (None) is the step's own."""

    key: str
    weight: float
    subject: str | None = None
    preheader: str | None = None
    discreet_subject: str | None = None
    discreet_preheader: str | None = None
    template: str | None = None
    line: int = 0


@dataclass(frozen=True)
class StoppingRule:
    """When the results are strong enough to declare a winner.

    A winner needs at least `min_exposed` people judged in every variant, the experiment running
    for `min_duration`, a probability of being best of `p_best` or more, an expected loss of
    choosing it under `max_expected_loss` (a share of its own conversion rate: 0.00005 is 0.005% of
    its conversions), and no guardrail (unsubscribes, pauses) clearly worse than another variant's.

    The defaults come from a simulation judging daily at 250 people per variant per day up to 6,000
    (tests/unit/engine/test_judging.py): over 200 experiments and four seeds they picked the better
    of 4% and 6% in 97.5-99.5% and declared a false A/A winner in 0.5-3%. P(best) ≥ 0.95 alone gave
    25-33% false winners over those looks: the loss threshold does most of the work.
    """

    min_exposed: int = 1000
    min_duration: timedelta = timedelta(days=7)
    p_best: float = 0.95
    max_expected_loss: float = 0.00005
    guardrail_p_worse: float = 0.99
    """A guardrail is "clearly worse" when the posterior probability that the candidate's rate
    is higher than another variant's is at least this. Not 0.95: with two guardrails and no real
    difference, the leader would look clearly worse in one of them at about one look in ten."""


@dataclass(frozen=True)
class Experiment:
    """A test of a step's variants, judged by `metric` within `window` after each send."""

    key: str
    variants: tuple[Variant, ...]
    metric: str = "consult_booked"
    window: timedelta = DEFAULT_WINDOW
    holdout: float = 0.0
    """The share of people (0 to 0.5) who skip the step; its delay still elapses."""
    promote: str = "manual"
    """"auto": once a winner is declared, everyone assigned after it gets the winner."""
    winner: str | None = None
    """A winner pinned in the file: everyone not yet assigned gets it, and judging stops."""
    stop: StoppingRule = StoppingRule()
    line: int = 0

    @property
    def auto_promote(self) -> bool:
        return self.promote == "auto"

    def variant(self, key: str) -> Variant | None:
        for variant in self.variants:
            if variant.key == key:
                return variant
        return None

    @property
    def variant_keys(self) -> tuple[str, ...]:
        return tuple(variant.key for variant in self.variants)
