"""Recording experiment arms at claim time, alike for the SQL and in-memory stores: which claims
are offered to the engine's `assign`, and the row values its answer becomes."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from collections.abc import Sequence as Seq
from dataclasses import replace
from typing import Any

from nurture.engine.ports import Assign, AssignedBy, Assignment, ClaimedDelivery

Row = dict[str, Any]


def to_offer(claimed: Seq[ClaimedDelivery], assign: Assign) -> list[ClaimedDelivery]:
    """The claims `assign` wants: steps under an experiment, not assigned yet. Only their
    subscribers' earlier arms are read, so a claim of untested steps costs nothing more."""
    return [claim for claim in claimed if claim.assignment is None and assign.tests(claim)]


def assign_claims(claimed: list[ClaimedDelivery], offered: Seq[ClaimedDelivery],
                  earlier: Mapping[uuid.UUID, Mapping[str, str]],
                  assign: Assign) -> tuple[list[ClaimedDelivery], list[Row]]:
    """The claims with the arms `assign` chose for those `offered`, and the delivery rows to
    write them to. `earlier` holds, by subscriber, the arms recorded on their other deliveries."""
    if not offered:
        return claimed, []
    ids = {claim.id for claim in offered}
    chosen = {key: value for key, value in assign(
        [replace(claim, earlier_arms=earlier.get(claim.subscriber.id, {})) for claim in offered]
    ).items() if key in ids}
    rows = [{"id": delivery_id, "experiment_key": found.experiment_key, "variant": found.arm,
             "assigned_by": found.by.value} for delivery_id, found in chosen.items()]
    return [replace(claim, assignment=chosen[claim.id]) if claim.id in chosen else claim
            for claim in claimed], rows


def recorded_assignment(experiment_key: str | None, variant: str | None,
                        assigned_by: str | None) -> Assignment | None:
    """The assignment a delivery row holds, if any."""
    if experiment_key is None or variant is None:
        return None
    return Assignment(experiment_key, variant, AssignedBy(assigned_by or AssignedBy.CHANCE.value))
