"""The rows a batch of enrollments writes and who is refused and why, decided in plain Python from
what the store already holds, so the SQL and in-memory stores enroll exactly alike."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Mapping
from collections.abc import Sequence as Seq
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from nurture.engine.ports import (
    DeliveryKind,
    DeliveryStatus,
    EnrollmentStatus,
    EnrollResult,
    NewEnrollment,
    NextDelivery,
    SubscriberStatus,
)
from nurture.store.rules import (
    NIL_UUID,
    REASON_ALREADY_ENROLLED,
    REASON_SUPPRESSED,
    address_hash,
    may_enroll,
    refused,
)

Row = dict[str, Any]


class KnownSubscriber(Protocol):
    """What enrolling reads of a subscriber the store already holds."""

    @property
    def id(self) -> uuid.UUID: ...
    @property
    def status(self) -> str: ...
    @property
    def first_name(self) -> str | None: ...
    @property
    def hesitations(self) -> Seq[str]: ...
    @property
    def confirmed_at(self) -> datetime | None: ...


@dataclass
class EnrollmentBatch:
    """Rows keyed by column name, ready for bulk statements; `results` in the order of the items."""

    new_subscribers: dict[str, Row] = field(default_factory=dict)
    updated_subscribers: dict[str, Row] = field(default_factory=dict)
    enrollments: list[Row] = field(default_factory=list)
    consents: list[Row] = field(default_factory=list)
    deliveries: list[Row] = field(default_factory=list)
    results: list[EnrollResult] = field(default_factory=list)

    @property
    def created(self) -> int:
        return sum(1 for result in self.results if result.created)


def plan_enrollments(
    items: Seq[NewEnrollment],
    *,
    existing: Mapping[str, KnownSubscriber],
    suppressed: Collection[str],
    open_pairs: set[tuple[uuid.UUID, str]],
    now: datetime,
) -> EnrollmentBatch:
    """`existing`: subscribers held, by address, as they were before this batch; `suppressed`: the
    address hashes on the suppression list; `open_pairs`: (subscriber id, sequence) of open
    enrollments, updated as this batch enrolls."""
    batch = EnrollmentBatch()
    for item in items:
        subscriber_id = _subscriber_for(batch, item, existing.get(item.email), suppressed, now)
        if subscriber_id is None:
            continue
        pair = (subscriber_id, item.sequence_key)
        if pair in open_pairs:
            batch.results.append(refused(item, subscriber_id, REASON_ALREADY_ENROLLED))
            continue
        open_pairs.add(pair)
        _add_enrollment(batch, item, subscriber_id, now)
    return batch


def _subscriber_for(
    batch: EnrollmentBatch,
    item: NewEnrollment,
    row: KnownSubscriber | None,
    suppressed: Collection[str],
    now: datetime,
) -> uuid.UUID | None:
    """The id of the subscriber this item enrolls, created or updated in the batch; None (and a
    refusal among the results) when the address may not be enrolled."""
    if address_hash(item.email) in suppressed:
        # No row is created for a suppressed address that we do not already hold.
        subscriber_id = row.id if row is not None else NIL_UUID
        batch.results.append(refused(item, subscriber_id, REASON_SUPPRESSED))
        return None
    if row is not None:
        if not may_enroll(row.status, item.consent.kind):
            batch.results.append(refused(item, row.id, f"subscriber {row.status}"))
            return None
        if item.email not in batch.updated_subscribers:
            batch.updated_subscribers[item.email] = subscriber_update(item, row, now)
        return row.id
    if item.email in batch.new_subscribers:
        known: uuid.UUID = batch.new_subscribers[item.email]["id"]
        return known
    subscriber_id = uuid.uuid4()
    batch.new_subscribers[item.email] = subscriber_insert(item, subscriber_id, now)
    return subscriber_id


def _add_enrollment(
    batch: EnrollmentBatch, item: NewEnrollment, subscriber_id: uuid.UUID, now: datetime
) -> None:
    enrollment_id = uuid.uuid4()
    batch.enrollments.append(
        {
            "id": enrollment_id,
            "subscriber_id": subscriber_id,
            "sequence_key": item.sequence_key,
            "status": EnrollmentStatus.ACTIVE.value,
            "content_version": item.content_version,
            "enrolled_at": now,
        }
    )
    batch.consents.append(
        {
            "id": uuid.uuid4(),
            "subscriber_id": subscriber_id,
            "kind": item.consent.kind,
            "source": item.consent.source,
            "at": now,
            "ip": item.consent.ip,
            "user_agent": item.consent.user_agent,
            "consent_text_sha256": item.consent.consent_text_sha256,
        }
    )
    if item.first_delivery is not None:
        batch.deliveries.extend(
            delivery_rows(
                item.first_delivery,
                subscriber_id=subscriber_id,
                enrollment_id=enrollment_id,
                content_version=item.content_version,
                now=now,
            )
        )
    batch.results.append(
        EnrollResult(
            email=item.email,
            subscriber_id=subscriber_id,
            enrollment_id=enrollment_id,
            created=True,
        )
    )


def subscriber_insert(item: NewEnrollment, subscriber_id: uuid.UUID, now: datetime) -> Row:
    return {
        "id": subscriber_id,
        "email": item.email,
        "first_name": item.first_name,
        "locale": item.locale,
        "time_zone": item.time_zone,
        "hesitations": sorted(item.hesitations),
        "discreet": item.discreet,
        "status": SubscriberStatus.ACTIVE.value,
        "created_at": now,
        "confirmed_at": now,
        "updated_at": now,
    }


def subscriber_update(item: NewEnrollment, row: KnownSubscriber, now: datetime) -> Row:
    # A source that lacks a name or hesitations (a bare CSV) must not wipe what the person told us.
    return {
        "id": row.id,
        "first_name": item.first_name if item.first_name is not None else row.first_name,
        "locale": item.locale,
        "time_zone": item.time_zone,
        "hesitations": sorted(item.hesitations) if item.hesitations else list(row.hesitations),
        "discreet": item.discreet,
        "status": SubscriberStatus.ACTIVE.value,
        "confirmed_at": row.confirmed_at or now,
        "updated_at": now,
    }


def delivery_rows(
    planned: NextDelivery,
    *,
    subscriber_id: uuid.UUID,
    enrollment_id: uuid.UUID,
    content_version: str | None,
    now: datetime,
) -> list[Row]:
    """The `skipped` rows for steps passed over, then the queued row of the chosen step.

    Columns that start out NULL are left out: fewer values to convert on the hot path."""

    def row(step_key: str, status: DeliveryStatus, due_at: datetime, reason: str | None,
            immediate: bool = False) -> Row:
        return {
            "id": uuid.uuid4(),
            "kind": DeliveryKind.STEP.value,
            "subscriber_id": subscriber_id,
            "enrollment_id": enrollment_id,
            "step_key": step_key,
            "status": status.value,
            "due_at": due_at,
            "attempts": 0,
            "skip_reason": reason,
            "content_version": content_version,
            "created_at": now,
            # Always given: a bulk insert takes the columns of its first row for every row.
            "immediate": immediate,
        }

    rows = [row(key, DeliveryStatus.SKIPPED, now, reason) for key, reason in planned.skipped]
    rows.append(row(planned.step_key, DeliveryStatus.QUEUED, planned.due_at, None,
                    planned.immediate))
    return rows
