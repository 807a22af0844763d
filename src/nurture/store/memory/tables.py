"""The in-memory store's tables: plain records named like the SQL columns, the unique keys the
database would enforce, and the snapshots and views read from them."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from nurture.engine.ports import (
    Assign,
    ClaimedDelivery,
    DeliveryKind,
    DeliveryStatus,
    EnrollmentSnapshot,
    EnrollmentStatus,
    LiveState,
    SubscriberSnapshot,
    SubscriberStatus,
)
from nurture.store.assignments import assign_claims, recorded_assignment, to_offer
from nurture.store.rules import (
    DONE,
    OPEN_ENROLLMENT,
    accepted_send,
    address_hash,
    require_aware,
)
from nurture.store.views import DeliveryView, EnrollmentView

Row = Mapping[str, Any]


class Record:
    """Instants are kept as aware UTC, as the SQL columns read them back; a naive one is refused."""

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, datetime):
            require_aware(name, value)
            value = value.astimezone(UTC)
        object.__setattr__(self, name, value)

    def assign(self, row: Row, *, key: str = "id") -> None:
        """UPDATE ... SET every column of `row` but its key."""
        for name, value in row.items():
            if name != key:
                setattr(self, name, value)


@dataclass
class SubscriberRecord(Record):
    id: uuid.UUID
    email: str
    first_name: str | None
    locale: str
    time_zone: str
    hesitations: list[str]
    discreet: bool
    status: str
    created_at: datetime
    confirmed_at: datetime | None
    updated_at: datetime


@dataclass
class EnrollmentRecord(Record):
    id: uuid.UUID
    subscriber_id: uuid.UUID
    sequence_key: str
    status: str
    content_version: str
    enrolled_at: datetime
    paused_until: datetime | None = None
    last_step_key: str | None = None
    last_sent_at: datetime | None = None
    ended_at: datetime | None = None
    end_reason: str | None = None

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_ENROLLMENT


@dataclass
class DeliveryRecord(Record):
    id: uuid.UUID
    kind: str
    subscriber_id: uuid.UUID
    enrollment_id: uuid.UUID | None
    step_key: str | None
    status: str
    due_at: datetime
    created_at: datetime
    attempts: int = 0
    lease_owner: str | None = None
    lease_expires_at: datetime | None = None
    message_id: str | None = None
    smtp_code: int | None = None
    last_error: str | None = None
    skip_reason: str | None = None
    content_version: str | None = None
    sent_at: datetime | None = None
    immediate: bool = False
    experiment_key: str | None = None
    variant: str | None = None
    assigned_by: str | None = None
    relay: str | None = None
    accepted_at: datetime | None = None

    def held_by(self, owner: str) -> bool:
        return self.lease_owner == owner and self.status == DeliveryStatus.SENDING.value

    def unlease(self) -> None:
        self.status = DeliveryStatus.QUEUED.value
        self.lease_owner = None
        self.lease_expires_at = None


@dataclass
class ConsentEventRecord(Record):
    id: uuid.UUID
    subscriber_id: uuid.UUID
    kind: str
    source: str
    at: datetime
    ip: str | None
    user_agent: str | None
    consent_text_sha256: str | None


@dataclass
class SuppressionRecord(Record):
    id: uuid.UUID
    address_sha256: str
    reason: str
    at: datetime


class Tables:
    """The rows, with the unique keys of the schema: one subscriber per address, one open
    enrollment per (subscriber, sequence), one delivery per (enrollment, step), one suppression
    per address hash. Not thread-safe on its own: MemoryStore holds the lock."""

    def __init__(self) -> None:
        self.subscribers: dict[uuid.UUID, SubscriberRecord] = {}
        self.enrollments: dict[uuid.UUID, EnrollmentRecord] = {}
        self.deliveries: dict[uuid.UUID, DeliveryRecord] = {}
        self.suppressions: dict[str, SuppressionRecord] = {}
        self.consent_events: list[ConsentEventRecord] = []
        self._subscriber_ids: dict[str, uuid.UUID] = {}
        self._steps: dict[tuple[uuid.UUID, str], uuid.UUID] = {}
        self._enrollment_deliveries: dict[uuid.UUID, list[uuid.UUID]] = {}

    # -- writing ---------------------------------------------------------------------------------

    def insert_subscriber(self, row: Row) -> None:
        record = SubscriberRecord(**row)
        if record.email in self._subscriber_ids:
            raise ValueError("a subscriber with this address already exists")
        self.subscribers[record.id] = record
        self._subscriber_ids[record.email] = record.id

    def insert_enrollment(self, row: Row) -> None:
        record = EnrollmentRecord(**row)
        if record.is_open and any(
            item.sequence_key == record.sequence_key
            for item in self.open_enrollments(record.subscriber_id)
        ):
            raise ValueError("the subscriber already has an open enrollment in this sequence")
        self.enrollments[record.id] = record

    def insert_delivery(self, row: Row, *, skip_conflict: bool = False) -> bool:
        """False when (enrollment, step) is taken and `skip_conflict` (ON CONFLICT DO NOTHING)."""
        record = DeliveryRecord(**row)
        key = self._step_key(record)
        if key is not None and key in self._steps:
            if skip_conflict:
                return False
            raise ValueError(f"enrollment {key[0]} already has a delivery for step {key[1]}")
        self.deliveries[record.id] = record
        if key is not None:
            self._steps[key] = record.id
        if record.enrollment_id is not None:
            self._enrollment_deliveries.setdefault(record.enrollment_id, []).append(record.id)
        return True

    def insert_consent_event(self, row: Row) -> None:
        self.consent_events.append(ConsentEventRecord(**row))

    def suppress(self, row: Row) -> bool:
        """False when the address hash was already suppressed (its first row stays)."""
        record = SuppressionRecord(**row)
        if record.address_sha256 in self.suppressions:
            return False
        self.suppressions[record.address_sha256] = record
        return True

    @staticmethod
    def _step_key(record: DeliveryRecord) -> tuple[uuid.UUID, str] | None:
        # As in SQL, a NULL in either column never conflicts.
        if record.enrollment_id is None or record.step_key is None:
            return None
        return (record.enrollment_id, record.step_key)

    # -- reading ---------------------------------------------------------------------------------

    def subscriber_by_email(self, email: str) -> SubscriberRecord | None:
        subscriber_id = self._subscriber_ids.get(email)
        return None if subscriber_id is None else self.subscribers[subscriber_id]

    def open_enrollments(self, subscriber_id: uuid.UUID) -> list[EnrollmentRecord]:
        return [
            item
            for item in self.enrollments.values()
            if item.subscriber_id == subscriber_id and item.is_open
        ]

    def deliveries_of(self, subscriber_id: uuid.UUID) -> Iterator[DeliveryRecord]:
        return (item for item in self.deliveries.values() if item.subscriber_id == subscriber_id)

    def is_suppressed(self, email: str) -> bool:
        return address_hash(email) in self.suppressions

    def done_step_keys(self, enrollment_id: uuid.UUID) -> frozenset[str]:
        return frozenset(
            record.step_key
            for record in (
                self.deliveries[delivery_id]
                for delivery_id in self._enrollment_deliveries.get(enrollment_id, ())
            )
            if record.status in DONE and record.step_key is not None
        )

    # -- what the ports and views return -----------------------------------------------------

    def claimed(self, record: DeliveryRecord) -> ClaimedDelivery:
        subscriber = self.subscribers[record.subscriber_id]
        enrollment = None
        if record.enrollment_id is not None:
            found = self.enrollments[record.enrollment_id]
            enrollment = EnrollmentSnapshot(
                id=found.id,
                sequence_key=found.sequence_key,
                status=EnrollmentStatus(found.status),
                paused_until=found.paused_until,
                enrolled_at=found.enrolled_at,
                done_step_keys=self.done_step_keys(found.id),
                last_sent_at=found.last_sent_at,
            )
        return ClaimedDelivery(
            id=record.id,
            kind=DeliveryKind(record.kind),
            step_key=record.step_key,
            due_at=record.due_at,
            attempts=record.attempts,
            subscriber=SubscriberSnapshot(
                id=subscriber.id,
                email=subscriber.email,
                first_name=subscriber.first_name,
                status=SubscriberStatus(subscriber.status),
                time_zone=subscriber.time_zone,
                hesitations=frozenset(subscriber.hesitations),
                discreet=subscriber.discreet,
                locale=subscriber.locale,
            ),
            enrollment=enrollment,
            suppressed=self.is_suppressed(subscriber.email),
            accepted=accepted_send(record.accepted_at, record.smtp_code, record.relay,
                                   record.content_version),
            immediate=record.immediate,
            assignment=recorded_assignment(record.experiment_key, record.variant,
                                           record.assigned_by),
        )

    def assign_arms(self, claimed: list[ClaimedDelivery], assign: Assign) -> list[ClaimedDelivery]:
        """The claims with the arms `assign` chose, written on their rows (as the SQL claim does)."""
        offered = to_offer(claimed, assign)
        earlier = self.earlier_arms({claim.subscriber.id for claim in offered})
        claimed, assigned = assign_claims(claimed, offered, earlier, assign)
        for values in assigned:
            self.deliveries[values["id"]].assign(values)
        return claimed

    def earlier_arms(self, subscriber_ids: Collection[uuid.UUID]) -> dict[uuid.UUID, dict[str, str]]:
        """Experiment key to arm, by subscriber, from every delivery that has one."""
        wanted = set(subscriber_ids)
        found: dict[uuid.UUID, dict[str, str]] = {}
        for record in self.deliveries.values():
            if record.subscriber_id in wanted and record.experiment_key and record.variant:
                found.setdefault(record.subscriber_id, {})[record.experiment_key] = record.variant
        return found

    def live_state(self, record: DeliveryRecord) -> LiveState:
        subscriber = self.subscribers[record.subscriber_id]
        enrollment = (
            None if record.enrollment_id is None else self.enrollments[record.enrollment_id]
        )
        return LiveState(
            subscriber_status=SubscriberStatus(subscriber.status),
            suppressed=self.is_suppressed(subscriber.email),
            enrollment_status=None if enrollment is None else EnrollmentStatus(enrollment.status),
            paused_until=None if enrollment is None else enrollment.paused_until,
        )

    def delivery_view(self, record: DeliveryRecord) -> DeliveryView:
        enrollment = (
            None if record.enrollment_id is None else self.enrollments[record.enrollment_id]
        )
        return DeliveryView(
            id=record.id,
            kind=DeliveryKind(record.kind),
            sequence_key=None if enrollment is None else enrollment.sequence_key,
            step_key=record.step_key,
            status=DeliveryStatus(record.status),
            due_at=record.due_at,
            attempts=record.attempts,
            lease_owner=record.lease_owner,
            lease_expires_at=record.lease_expires_at,
            sent_at=record.sent_at,
            message_id=record.message_id,
            smtp_code=record.smtp_code,
            last_error=record.last_error,
            skip_reason=record.skip_reason,
            content_version=record.content_version,
            variant=record.variant,
            relay=record.relay,
        )

    @staticmethod
    def enrollment_view(record: EnrollmentRecord) -> EnrollmentView:
        return EnrollmentView(
            id=record.id,
            sequence_key=record.sequence_key,
            status=EnrollmentStatus(record.status),
            last_step_key=record.last_step_key,
            last_sent_at=record.last_sent_at,
            enrolled_at=record.enrolled_at,
            ended_at=record.ended_at,
            end_reason=record.end_reason,
        )
