"""Recording outcomes in SQL: the leased rows locked in id order, then the changes `outcome_rows`
plans written in bulk (deliveries, enrollments, suppressions, next deliveries) in one transaction."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence as Seq
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.engine import Connection

from nurture.engine.ports import DeliveryStatus, Outcome, SubscriberStatus
from nurture.store.models import (
    Delivery,
    Enrollment,
    delivery_table,
    enrollment_table,
    subscriber_table,
    suppression_table,
)
from nurture.store.outcome_rows import (
    HeldDelivery,
    bounced_subscribers,
    delivery_updates,
    enrollment_changes,
    exited_enrollments,
    next_delivery_rows,
    suppression_reasons,
    suppression_rows,
    wanted_next,
)
from nurture.store.rules import outcomes_by_delivery
from nurture.store.sql.bulk import Bulk, is_open
from nurture.store.sql.suppressions import subscriber_emails

log = logging.getLogger(__name__)


class Outcomes:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._bulk = Bulk(engine)

    def record(self, outcomes: Seq[Outcome], *, owner: str) -> None:
        if not outcomes:
            return
        by_id = outcomes_by_delivery(outcomes)

        with self._engine.begin() as conn:
            held = self._held_rows(conn, sorted(by_id), owner)
            lost = [str(delivery_id) for delivery_id in by_id if delivery_id not in held]
            if lost:
                log.warning(
                    "%d outcome(s) not recorded: %s no longer holds the lease on deliveries %s",
                    len(lost),
                    owner,
                    ", ".join(lost),
                )
            if not held:
                return
            # Outcome order, not lock order: the first proposal of a next step wins.
            mine = [outcome for outcome in by_id.values() if outcome.delivery_id in held]
            wanted = wanted_next(mine, held)
            self._bulk.update(conn, delivery_table, "id", delivery_updates(mine, held))
            changes = enrollment_changes(mine, held)
            self._bulk.update(conn, enrollment_table, "id", changes.sent)
            # An enrollment already ended (unsubscribe, bounce) keeps its first reason.
            self._bulk.update(
                conn, enrollment_table, "id", changes.ends, is_open(enrollment_table.c.status)
            )
            self._apply_suppressions(conn, mine, held)
            self._queue_next(conn, wanted)

    def _held_rows(self, conn: Connection, ids: Seq[uuid.UUID], owner: str) -> dict[uuid.UUID, Any]:
        held: dict[uuid.UUID, Any] = {}
        for chunk in self._bulk.batches(ids):
            for row in conn.execute(
                select(
                    Delivery.id,
                    Delivery.subscriber_id,
                    Delivery.enrollment_id,
                    Delivery.step_key,
                    Delivery.due_at,
                    Delivery.attempts,
                    Delivery.message_id,
                    Delivery.smtp_code,
                    Delivery.last_error,
                    Delivery.skip_reason,
                    Delivery.content_version,
                    Delivery.sent_at,
                    Delivery.relay,
                )
                .where(
                    self._bulk.among(Delivery.id, chunk),
                    Delivery.lease_owner == owner,
                    Delivery.status == DeliveryStatus.SENDING.value,
                )
                # Id order: two recorders never lock the same rows in opposite orders.
                .order_by(Delivery.id)
                .with_for_update()
            ):
                held[row.id] = row
        return held

    def _apply_suppressions(
        self, conn: Connection, outcomes: Seq[Outcome], held: dict[uuid.UUID, Any]
    ) -> None:
        reasons = suppression_reasons(outcomes, held)
        if not reasons:
            return
        emails = subscriber_emails(self._bulk, conn, sorted(reasons))
        suppressions = suppression_rows(reasons, emails)
        self._bulk.insert(conn, suppression_table, suppressions, conflict=["address_sha256"])
        self._bulk.update(
            conn,
            subscriber_table,
            "id",
            bounced_subscribers(reasons),
            # An erased subscriber stays erased: that status is a promise to the person.
            subscriber_table.c.status != SubscriberStatus.ERASED.value,
        )
        self._bulk.update(
            conn,
            enrollment_table,
            "subscriber_id",
            exited_enrollments(reasons),
            is_open(enrollment_table.c.status),
        )
        log.info("suppressed %d address(es) after permanent failures", len(suppressions))

    def _queue_next(self, conn: Connection, wanted: Seq[tuple[Outcome, HeldDelivery]]) -> None:
        if not wanted:
            return
        open_ids = self._open_enrollments(
            conn,
            sorted({row.enrollment_id for _, row in wanted if row.enrollment_id is not None}),
        )
        # The unique (enrollment_id, step_key) key turns a second enqueue of a step into a no-op:
        # "already queued" is the right answer, so that conflict is not an error.
        self._bulk.insert(
            conn,
            delivery_table,
            next_delivery_rows(wanted, open_ids),
            conflict=["enrollment_id", "step_key"],
        )

    def _open_enrollments(self, conn: Connection, ids: Seq[uuid.UUID]) -> set[uuid.UUID]:
        found: set[uuid.UUID] = set()
        for chunk in self._bulk.batches(ids):
            found.update(
                conn.scalars(
                    select(Enrollment.id).where(
                        self._bulk.among(Enrollment.id, chunk), is_open(Enrollment.status)
                    )
                )
            )
        return found
