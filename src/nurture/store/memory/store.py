"""MemoryStore: the delivery, enrollment and feedback ports in one process's memory, for tests.

It keeps SqlStore's semantics: leases with an owner and an expiry, the same unique keys, the same
refusals, and outcomes and enrollments planned by the same code (`outcome_rows`, `enrollment_rows`,
`assignments`). It needs no database and imports no SQLAlchemy."""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Iterable, Mapping
from collections.abc import Sequence as Seq
from dataclasses import replace
from datetime import datetime, timedelta

from nurture.engine.ports import (
    Assign,
    ClaimedDelivery,
    DeliveryStatus,
    EnrollmentStatus,
    EnrollResult,
    LiveState,
    NewEnrollment,
    Outcome,
    Progress,
    SubscriberStatus,
)
from nurture.store.enrollment_rows import EnrollmentBatch, plan_enrollments
from nurture.store.memory.direct import DirectAccess
from nurture.store.memory.outcomes import apply_outcomes, check_instants, held_rows
from nurture.store.memory.tables import DeliveryRecord, SubscriberRecord, Tables
from nurture.store.rules import (
    CLAIMABLE,
    SUPPRESSION_REASON_MAX,
    address_hash,
    outcomes_by_delivery,
    replaceable_by,
    require_aware,
)
from nurture.store.views import DeliveryView, EnrollmentView

log = logging.getLogger(__name__)


class MemoryStore(DirectAccess):
    """Every public method holds one lock for its whole run, as each SqlStore method is one
    transaction: what a method checks is still true when it writes, and a refused call writes
    nothing."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tables = Tables()

    # -- DeliveryStore -------------------------------------------------------------------------

    def claim_due(
        self, *, now: datetime, owner: str, limit: int, lease: timedelta,
        assign: Assign | None = None,
    ) -> list[ClaimedDelivery]:
        require_aware("now", now)
        if limit <= 0:
            return []
        with self._lock:
            rows = self._tables.deliveries.values()
            # Expired leases (crash leftovers) first: they have waited longest.
            expired = sorted(
                (row for row in rows if _expired(row, now)),
                key=lambda row: row.lease_expires_at or now,
            )[:limit]
            due = sorted(
                (row for row in rows if row.status in CLAIMABLE and row.due_at <= now),
                key=lambda row: row.due_at,
            )[: limit - len(expired)]
            for row in due:
                row.accepted_at = None  # from another send: only a lease left over counts
            for row in (*expired, *due):
                row.status = DeliveryStatus.SENDING.value
                row.lease_owner = owner
                row.lease_expires_at = now + lease
            claimed = [self._tables.claimed(row) for row in (*expired, *due)]
            if assign is not None:
                claimed = self._tables.assign_arms(claimed, assign)
        claimed.sort(key=lambda item: (item.due_at, item.id))
        log.debug("claimed %d deliveries for %s", len(claimed), owner)
        return claimed

    def record(self, outcomes: Seq[Outcome], *, owner: str) -> None:
        if not outcomes:
            return
        by_id = outcomes_by_delivery(outcomes)
        for outcome in by_id.values():
            check_instants(outcome)
        with self._lock:
            held = held_rows(self._tables, sorted(by_id), owner)
            lost = [str(delivery_id) for delivery_id in by_id if delivery_id not in held]
            if lost:
                log.warning(
                    "%d outcome(s) not recorded: %s no longer holds the lease on deliveries %s",
                    len(lost),
                    owner,
                    ", ".join(lost),
                )
            if held:
                # Outcome order, not id order: the first proposal of a next step wins.
                mine = [outcome for outcome in by_id.values() if outcome.delivery_id in held]
                apply_outcomes(self._tables, mine, held)

    def mark_accepted(self, outcomes: Seq[Outcome], *, owner: str) -> None:
        with self._lock:
            for outcome in outcomes:
                row = self._tables.deliveries.get(outcome.delivery_id)
                if outcome.status is DeliveryStatus.SENT and row is not None \
                        and row.held_by(owner):
                    row.accepted_at = outcome.at
                    row.smtp_code, row.relay = outcome.smtp_code, outcome.relay
                    row.content_version = outcome.content_version

    def release(self, delivery_ids: Seq[uuid.UUID], *, owner: str) -> None:
        with self._lock:
            for row in self._rows(delivery_ids):
                if row.held_by(owner):
                    row.unlease()

    def release_all(self, owner: str) -> int:
        """Give back every lease `owner` holds (graceful shutdown); returns how many."""
        with self._lock:
            held = [row for row in self._tables.deliveries.values()
                    if row.held_by(owner) and row.accepted_at is None]
            for row in held:
                row.unlease()
        if held:
            log.info("released %d leased deliveries of %s", len(held), owner)
        return len(held)

    def hold_destination(self, domains: Seq[str], *, until: datetime, reason: str) -> int:
        require_aware("until", until)
        suffixes = tuple(f"@{domain}" for domain in domains)
        with self._lock:
            moved = [row for row in self._tables.deliveries.values()
                     if row.status in CLAIMABLE and row.due_at < until
                     and self._tables.subscribers[row.subscriber_id].email.endswith(suffixes)]
            for row in moved:
                row.due_at, row.last_error = until, reason
        return len(moved)

    def reap_expired(self, now: datetime) -> int:
        """Return `sending` rows whose lease expired at `now` to the queue; returns how many."""
        require_aware("now", now)
        with self._lock:
            expired = [row for row in self._tables.deliveries.values()
                       if _expired(row, now) and row.accepted_at is None]
            for row in expired:
                row.unlease()
        if expired:
            log.warning("reaped %d deliveries whose lease expired", len(expired))
        return len(expired)

    def recheck(
        self, delivery_ids: Seq[uuid.UUID], *, owner: str, now: datetime, lease: timedelta
    ) -> dict[uuid.UUID, LiveState]:
        """Renew `owner`'s lease on these deliveries and return their current state; a delivery
        `owner` no longer holds is left out (see SqlStore.recheck)."""
        require_aware("now", now)
        states: dict[uuid.UUID, LiveState] = {}
        with self._lock:
            for row in self._rows(sorted(set(delivery_ids))):
                if row.held_by(owner):
                    row.lease_expires_at = now + lease
                    states[row.id] = self._tables.live_state(row)
        return states

    # -- EnrollmentStore -----------------------------------------------------------------------

    def enroll(
        self, items: Seq[NewEnrollment], *, now: datetime, progress: Progress | None = None
    ) -> list[EnrollResult]:
        require_aware("now", now)
        if not items:
            return []
        for item in items:
            if item.first_delivery is not None:
                require_aware("NextDelivery.due_at", item.first_delivery.due_at)
        with self._lock:
            batch = self._plan(items, now)
            self._write(batch)
        log.info(
            "enrolled %d of %d (%d new subscribers)",
            batch.created,
            len(items),
            len(batch.new_subscribers),
        )
        if progress is not None:
            progress(len(items), len(items))
        return batch.results

    def _plan(self, items: Seq[NewEnrollment], now: datetime) -> EnrollmentBatch:
        tables = self._tables
        emails = sorted({item.email for item in items})
        # Copies: the plan reads the subscribers as they were before this batch.
        existing = {
            email: replace(found)
            for email in emails
            if (found := tables.subscriber_by_email(email)) is not None
        }
        known = {row.id for row in existing.values()}
        sequences = {item.sequence_key for item in items}
        batch = plan_enrollments(
            items,
            existing=existing,
            suppressed={address_hash(email) for email in emails if tables.is_suppressed(email)},
            open_pairs={
                (row.subscriber_id, row.sequence_key)
                for row in tables.enrollments.values()
                if row.subscriber_id in known and row.sequence_key in sequences and row.is_open
            },
            now=now,
        )
        steps = [(row["enrollment_id"], row["step_key"]) for row in batch.deliveries]
        if len(set(steps)) != len(steps):
            # The database's unique (enrollment_id, step_key) key would refuse the batch.
            raise ValueError("a planned delivery names the same step twice")
        return batch

    def _write(self, batch: EnrollmentBatch) -> None:
        tables = self._tables
        for row in batch.new_subscribers.values():
            tables.insert_subscriber(row)
        for row in batch.updated_subscribers.values():
            tables.subscribers[row["id"]].assign(row)
        for row in batch.enrollments:
            tables.insert_enrollment(row)
        for row in batch.consents:
            tables.insert_consent_event(row)
        for row in batch.deliveries:
            tables.insert_delivery(row)

    # -- FeedbackStore ---------------------------------------------------------------------------

    def feedback_targets(
        self, *, emails: Seq[str], delivery_ids: Seq[uuid.UUID]
    ) -> tuple[dict[str, uuid.UUID], dict[uuid.UUID, uuid.UUID]]:
        """Subscriber ids by (normalized) address and by delivery id, for those that exist."""
        with self._lock:
            by_email = {
                email: found.id
                for email in sorted({email.strip().lower() for email in emails})
                if (found := self._tables.subscriber_by_email(email)) is not None
            }
            by_delivery = {row.id: row.subscriber_id for row in self._rows(set(delivery_ids))}
        return by_email, by_delivery

    def suppress_subscribers(
        self, reasons: Mapping[uuid.UUID, str], *, status: SubscriberStatus, now: datetime
    ) -> int:
        """Suppress these subscribers' addresses, set their status, end their open enrollments and
        skip their waiting deliveries; returns how many addresses were new (see SqlStore)."""
        require_aware("now", now)
        replaceable = replaceable_by(status)
        if not reasons:
            return 0
        with self._lock:
            found = [
                self._tables.subscribers[subscriber_id]
                for subscriber_id in sorted(reasons)
                if subscriber_id in self._tables.subscribers
            ]
            fresh = sum(
                self._tables.suppress(
                    {
                        "id": uuid.uuid4(),
                        "address_sha256": address_hash(subscriber.email),
                        "reason": reasons[subscriber.id][:SUPPRESSION_REASON_MAX],
                        "at": now,
                    }
                )
                for subscriber in found
            )
            for subscriber in found:
                self._end_everything(subscriber, status, replaceable, now)
        log.info(
            "addresses suppressed after feedback",
            extra={"status": status.value, "subscribers": len(found), "new": fresh},
        )
        return fresh

    def _end_everything(
        self,
        subscriber: SubscriberRecord,
        status: SubscriberStatus,
        replaceable: tuple[str, ...],
        now: datetime,
    ) -> None:
        if subscriber.status in replaceable:
            subscriber.status = status.value
            subscriber.updated_at = now
        for enrollment in self._tables.open_enrollments(subscriber.id):
            enrollment.status = EnrollmentStatus.EXITED.value
            enrollment.ended_at = now
            enrollment.end_reason = status.value
        for row in self._tables.deliveries_of(subscriber.id):
            if row.status in CLAIMABLE:
                row.status = DeliveryStatus.SKIPPED.value
                row.skip_reason = status.value

    # -- Inspection, as SqlStore offers it ---------------------------------------------------------

    def counts_by_status(self) -> dict[str, int]:
        """Deliveries per status, with every status present (zero when none)."""
        counts = {status.value: 0 for status in DeliveryStatus}
        with self._lock:
            for row in self._tables.deliveries.values():
                counts[row.status] += 1
        return counts

    def deliveries_for(self, email: str) -> list[DeliveryView]:
        """Every delivery of the subscriber with this (normalized) address, oldest first."""
        with self._lock:
            subscriber = self._tables.subscriber_by_email(email)
            if subscriber is None:
                return []
            rows = sorted(
                self._tables.deliveries_of(subscriber.id),
                key=lambda row: (row.due_at, row.created_at, row.step_key is not None,
                                 row.step_key or ""),
            )
            return [self._tables.delivery_view(row) for row in rows]

    def enrollments_for(self, email: str) -> list[EnrollmentView]:
        """Every enrollment of the subscriber with this (normalized) address, oldest first."""
        with self._lock:
            subscriber = self._tables.subscriber_by_email(email)
            if subscriber is None:
                return []
            rows = sorted(
                (row for row in self._tables.enrollments.values()
                 if row.subscriber_id == subscriber.id),
                key=lambda row: (row.enrolled_at, row.sequence_key),
            )
            return [self._tables.enrollment_view(row) for row in rows]

    def is_suppressed(self, email: str) -> bool:
        with self._lock:
            return self._tables.is_suppressed(email)

    def _rows(self, delivery_ids: Iterable[uuid.UUID]) -> list[DeliveryRecord]:
        rows = self._tables.deliveries
        return [rows[delivery_id] for delivery_id in delivery_ids if delivery_id in rows]


def _expired(row: DeliveryRecord, now: datetime) -> bool:
    return (
        row.status == DeliveryStatus.SENDING.value
        and row.lease_expires_at is not None
        and row.lease_expires_at <= now
    )
