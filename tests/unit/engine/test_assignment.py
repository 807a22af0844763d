"""Assignment to arms: by weight, within chance (a chi-square test on 10,000 people), the holdout
share, the same arm every time for the same person, and independent between experiments."""

from __future__ import annotations

import random
import uuid
from collections import Counter

import pytest
from scipy.stats import chisquare

from nurture.domain.experiments import HOLDOUT, Experiment, Variant
from nurture.engine.assignment import Assigner

SECRET = "assignment-test-secret-key"


def _ids(count: int, seed: int = 2026) -> list[uuid.UUID]:
    chance = random.Random(seed)
    return [uuid.UUID(int=chance.getrandbits(128), version=4) for _ in range(count)]


def _experiment(*weights: float, holdout: float = 0.0, key: str = "subject-test") -> Experiment:
    return Experiment(key=key, holdout=holdout,
                      variants=tuple(Variant(key=chr(ord("a") + i), weight=w)
                                     for i, w in enumerate(weights)))


@pytest.mark.parametrize("weights", [(50, 50), (70, 30), (1, 1, 2)])
def test_10000_people_split_by_the_weights_within_chance(weights: tuple[float, ...]) -> None:
    experiment = _experiment(*weights)
    assigner = Assigner(SECRET)
    counts = Counter(assigner.arm(person, experiment) for person in _ids(10_000))
    observed = [counts[variant.key] for variant in experiment.variants]
    expected = [10_000 * w / sum(weights) for w in weights]
    result = chisquare(observed, expected)
    print(f"weights {weights}: observed {observed}, chi-square p = {result.pvalue:.3f}")
    assert result.pvalue > 0.01


def test_the_holdout_takes_its_share_and_the_rest_follow_the_weights() -> None:
    experiment = _experiment(70, 30, holdout=0.1)
    counts = Counter(Assigner(SECRET).arm(person, experiment) for person in _ids(10_000))
    observed = [counts[HOLDOUT], counts["a"], counts["b"]]
    assert chisquare(observed, [1_000, 6_300, 2_700]).pvalue > 0.01


def test_the_same_person_gets_the_same_arm_and_experiments_draw_independently() -> None:
    people = _ids(2_000)
    first, second = _experiment(50, 50, key="first"), _experiment(50, 50, key="second")
    assigner = Assigner(SECRET)
    arms = [assigner.arm(p, first) for p in people]
    assert arms == [Assigner(SECRET).arm(p, first) for p in people]
    pairs = Counter((arm, assigner.arm(p, second)) for arm, p in zip(arms, people, strict=True))
    assert chisquare([pairs[k] for k in [("a", "a"), ("a", "b"), ("b", "a"), ("b", "b")]]).pvalue > 0.01
    # Another deployment's key draws other arms: assignment cannot be guessed from an id.
    other = [Assigner("another-deployment-secret").arm(p, first) for p in people]
    assert 0.4 < sum(a != b for a, b in zip(arms, other, strict=True)) / len(people) < 0.6
