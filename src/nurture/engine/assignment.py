"""Who gets which variant of a step: an HMAC of the secret key, the subscriber and the experiment,
mapped onto the holdout and the weights; sticky across retries, restarts, reloads and processes
because it is recorded on the delivery when the row is first claimed."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from collections.abc import Sequence as Seq
from dataclasses import dataclass
from uuid import UUID

from nurture.content.library import Content
from nurture.domain.experiments import HOLDOUT, Experiment
from nurture.domain.model import Sequence, Step
from nurture.engine.decisions import profile_of
from nurture.engine.ports import (
    AssignedBy,
    Assignment,
    ClaimedDelivery,
    DeliveryKind,
    EnrollmentStatus,
    SubscriberStatus,
)

_SCALE = float(2**64)


class Assigner:
    """Draws arms with a key of its own, derived from the deployment's secret key."""

    def __init__(self, secret_key: str) -> None:
        key = hashlib.sha256(b"nurture.experiments\0" + secret_key.encode()).digest()
        # Keyed once; each draw copies the keyed state instead of keying again.
        self._keyed = hmac.new(key, digestmod=hashlib.sha256)

    def draw(self, subscriber_id: UUID, experiment_key: str) -> float:
        """A number in [0, 1), the same for the same person and experiment, independent
        between experiments."""
        keyed = self._keyed.copy()
        keyed.update(subscriber_id.bytes + experiment_key.encode())
        digest = keyed.digest()
        return int.from_bytes(digest[:8], "big") / _SCALE

    def arm(self, subscriber_id: UUID, experiment: Experiment) -> str:
        """The holdout for the first `holdout` share of draws, else a variant by weight."""
        draw = self.draw(subscriber_id, experiment.key)
        if draw < experiment.holdout:
            return HOLDOUT
        point = (draw - experiment.holdout) / (1 - experiment.holdout)
        total = sum(variant.weight for variant in experiment.variants)
        reached = 0.0
        for variant in experiment.variants:
            reached += variant.weight / total
            if point < reached:
                return variant.key
        return experiment.variants[-1].key  # rounding at the very top of the range

    def for_claims(self, content: Content, winners: Mapping[str, str]) -> ClaimArms:
        """The `assign` a claim calls, for this content and these declared winners."""
        return ClaimArms(self, content, winners)


@dataclass(frozen=True)
class ClaimArms:
    """An arm for each claimed step under an experiment, with this content and these winners."""

    assigner: Assigner
    content: Content
    winners: Mapping[str, str]

    def tests(self, claim: ClaimedDelivery) -> bool:
        return self._experiment(claim) is not None

    def _experiment(self, claim: ClaimedDelivery) -> Experiment | None:
        """The experiment the claim's step is under, unless it is skipped whatever the arm or
        its reader reads their own locale's text (every arm the same email to them)."""
        tested = tested_step(claim, self.content)
        if tested is None or not self.content.library.reads_default_text(
                tested[0], tested[1], claim.subscriber.locale):
            return None
        return tested[1].experiment

    def __call__(self, claims: Seq[ClaimedDelivery]) -> dict[UUID, Assignment]:
        chosen: dict[UUID, Assignment] = {}
        for claim in claims:
            found = self._assignment(claim)
            if found is not None:
                chosen[claim.id] = found
        return chosen

    def _assignment(self, claim: ClaimedDelivery) -> Assignment | None:
        experiment = self._experiment(claim)
        if experiment is None:
            return None
        earlier = claim.earlier_arms.get(experiment.key)
        if earlier is not None:
            return Assignment(experiment.key, earlier, AssignedBy.EARLIER)
        winner = experiment.winner or (self.winners.get(experiment.key)
                                       if experiment.auto_promote else None)
        if winner is not None and experiment.variant(winner) is not None:
            return Assignment(experiment.key, winner, AssignedBy.WINNER)
        return Assignment(experiment.key, self.assigner.arm(claim.subscriber.id, experiment))


def tested_step(claim: ClaimedDelivery, content: Content) -> tuple[Sequence, Step] | None:
    """The sequence and step of a claim that would go out now under an experiment; None for
    anything that will be skipped whatever the arm (someone who left, a condition not met)."""
    enrollment = claim.enrollment
    if (claim.kind is not DeliveryKind.STEP or enrollment is None or claim.unreadable
            or claim.suppressed or claim.subscriber.status is not SubscriberStatus.ACTIVE
            or enrollment.status not in (EnrollmentStatus.ACTIVE, EnrollmentStatus.PAUSED)):
        return None
    sequence = content.sequences.get(enrollment.sequence_key)
    step = sequence.step(claim.step_key or "") if sequence is not None else None
    if sequence is None or step is None or step.experiment is None:
        return None
    if step.when is not None and not step.when.matches(profile_of(claim)):
        return None
    return sequence, step

