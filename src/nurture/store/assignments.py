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


def unassigned_subscribers(claimed: Seq[ClaimedDelivery]) -> list[uuid.UUID]:
    """The subscribers whose earlier arms the claim reads: those of step rows not yet assigned."""
    return sorted({claim.subscriber.id for claim in claimed
                   if claim.assignment is None and claim.enrollment is not None})


def assign_claims(claimed: list[ClaimedDelivery], earlier: Mapping[uuid.UUID, Mapping[str, str]],
                  assign: Assign) -> tuple[list[ClaimedDelivery], list[Row]]:
    """The claims with the assignments `assign` chose, and the delivery rows to write them to.

    `earlier` holds, by subscriber, the arms recorded on their other deliveries."""
    offered = [replace(claim, earlier_arms=earlier.get(claim.subscriber.id, {}))
               for claim in claimed if claim.assignment is None and claim.enrollment is not None]
    if not offered:
        return claimed, []
    chosen = {key: value for key, value in assign(offered).items()
              if key in {claim.id for claim in offered}}
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
