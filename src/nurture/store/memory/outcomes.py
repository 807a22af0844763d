"""How the in-memory store applies a batch of outcomes: the changes `outcome_rows` plans, written
to its tables with the conditions SqlStore's statements carry."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence as Seq
from dataclasses import replace

from nurture.engine.ports import Outcome, SubscriberStatus
from nurture.store.memory.tables import DeliveryRecord, Tables
from nurture.store.outcome_rows import (
    bounced_subscribers,
    delivery_updates,
    enrollment_changes,
    exited_enrollments,
    next_delivery_rows,
    suppression_reasons,
    suppression_rows,
    wanted_next,
)
from nurture.store.rules import require_aware

log = logging.getLogger(__name__)


def check_instants(outcome: Outcome) -> None:
    """The instants an outcome writes are aware (SQL refuses a naive one at the statement, and
    rolls back; checking first keeps a refused batch from half-writing memory)."""
    if outcome.due_at is not None:
        require_aware("Outcome.due_at", outcome.due_at)
    if outcome.next_delivery is not None:
        require_aware("NextDelivery.due_at", outcome.next_delivery.due_at)


def held_rows(tables: Tables, ids: Seq[uuid.UUID], owner: str) -> dict[uuid.UUID, DeliveryRecord]:
    """Copies of the rows `owner` leases among `ids`, as they are before the outcomes apply."""
    return {
        delivery_id: replace(tables.deliveries[delivery_id])
        for delivery_id in ids
        if delivery_id in tables.deliveries and tables.deliveries[delivery_id].held_by(owner)
    }


def apply_outcomes(
    tables: Tables, outcomes: Seq[Outcome], held: dict[uuid.UUID, DeliveryRecord]
) -> None:
    wanted = wanted_next(outcomes, held)  # may refuse the batch: before any write
    for row in delivery_updates(outcomes, held):
        tables.deliveries[row["id"]].assign(row)
    changes = enrollment_changes(outcomes, held)
    for row in changes.sent:
        tables.enrollments[row["id"]].assign(row)
    for row in changes.ends:
        enrollment = tables.enrollments[row["id"]]
        if enrollment.is_open:
            enrollment.assign(row)
    _apply_suppressions(tables, outcomes, held)
    open_ids = {
        row.enrollment_id
        for _, row in wanted
        if row.enrollment_id is not None and tables.enrollments[row.enrollment_id].is_open
    }
    for row in next_delivery_rows(wanted, open_ids):
        tables.insert_delivery(row, skip_conflict=True)


def _apply_suppressions(
    tables: Tables, outcomes: Seq[Outcome], held: dict[uuid.UUID, DeliveryRecord]
) -> None:
    reasons = suppression_reasons(outcomes, held)
    if not reasons:
        return
    emails = {subscriber_id: tables.subscribers[subscriber_id].email for subscriber_id in reasons}
    suppressions = suppression_rows(reasons, emails)
    for row in suppressions:
        tables.suppress(row)
    for row in bounced_subscribers(reasons):
        subscriber = tables.subscribers[row["id"]]
        # An erased subscriber stays erased: that status is a promise to the person.
        if subscriber.status != SubscriberStatus.ERASED.value:
            subscriber.assign(row)
    for row in exited_enrollments(reasons):
        for enrollment in tables.open_enrollments(row["subscriber_id"]):
            enrollment.assign(row, key="subscriber_id")
    log.info("suppressed %d address(es) after permanent failures", len(suppressions))
