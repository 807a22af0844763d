"""What a batch of outcomes changes, decided in plain Python from the leased rows it applies to, so
the SQL and in-memory stores record exactly alike: the deliveries' new state, the enrollments'
last step and end, the addresses to suppress and the next deliveries to queue."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Mapping
from collections.abc import Sequence as Seq
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from nurture.engine.ports import DeliveryStatus, EnrollmentStatus, Outcome, SubscriberStatus
from nurture.store.enrollment_rows import delivery_rows
from nurture.store.rules import address_hash

Row = dict[str, Any]


class HeldDelivery(Protocol):
    """A delivery row as read (under lock) before its outcome is applied."""

    @property
    def id(self) -> uuid.UUID: ...
    @property
    def subscriber_id(self) -> uuid.UUID: ...
    @property
    def enrollment_id(self) -> uuid.UUID | None: ...
    @property
    def step_key(self) -> str | None: ...
    @property
    def due_at(self) -> datetime: ...
    @property
    def attempts(self) -> int: ...
    @property
    def message_id(self) -> str | None: ...
    @property
    def smtp_code(self) -> int | None: ...
    @property
    def last_error(self) -> str | None: ...
    @property
    def skip_reason(self) -> str | None: ...
    @property
    def content_version(self) -> str | None: ...
    @property
    def sent_at(self) -> datetime | None: ...
    @property
    def relay(self) -> str | None: ...


Held = Mapping[uuid.UUID, HeldDelivery]


@dataclass(frozen=True)
class EnrollmentChanges:
    sent: list[Row]
    """Last step and time of each enrollment that had a step sent, whatever its status."""
    ends: list[Row]
    """Enrollments to end; applied only to those still open, so an ended one keeps its reason."""


def delivery_updates(outcomes: Seq[Outcome], held: Held) -> list[Row]:
    """One row per outcome, keyed by delivery id: the new status, and the lease given back."""
    return [_delivery_update(outcome, held[outcome.delivery_id]) for outcome in outcomes]


def _delivery_update(outcome: Outcome, row: HeldDelivery) -> Row:
    status = outcome.status
    rescheduled = status in (DeliveryStatus.QUEUED, DeliveryStatus.DEFERRED)
    skipped = status is DeliveryStatus.SKIPPED
    return {
        "id": row.id,
        "status": status.value,
        "due_at": outcome.due_at if rescheduled and outcome.due_at else row.due_at,
        "attempts": row.attempts + (1 if outcome.count_attempt else 0),
        "lease_owner": None,
        "lease_expires_at": None,
        "sent_at": outcome.at if status is DeliveryStatus.SENT else row.sent_at,
        "message_id": outcome.message_id or row.message_id,
        "smtp_code": outcome.smtp_code if outcome.smtp_code is not None else row.smtp_code,
        "last_error": (
            outcome.error if outcome.error is not None and not skipped else row.last_error
        ),
        "skip_reason": outcome.error if skipped else row.skip_reason,
        "content_version": outcome.content_version or row.content_version,
        "relay": outcome.relay or row.relay,
    }


def enrollment_changes(outcomes: Seq[Outcome], held: Held) -> EnrollmentChanges:
    sent: dict[uuid.UUID, Row] = {}
    ends: dict[uuid.UUID, Row] = {}
    # In time order: the latest send is the last step; the earliest end gives the reason.
    for outcome in sorted(outcomes, key=lambda item: item.at):
        row = held[outcome.delivery_id]
        if row.enrollment_id is None:
            continue
        if outcome.status is DeliveryStatus.SENT:
            sent[row.enrollment_id] = {
                "id": row.enrollment_id,
                "last_step_key": row.step_key,
                "last_sent_at": outcome.at,
            }
        if outcome.end_enrollment is not None:
            ends.setdefault(
                row.enrollment_id,
                {
                    "id": row.enrollment_id,
                    "status": outcome.end_enrollment.value,
                    "ended_at": outcome.at,
                    "end_reason": outcome.end_reason,
                },
            )
    return EnrollmentChanges(sent=list(sent.values()), ends=list(ends.values()))


def suppression_reasons(outcomes: Seq[Outcome], held: Held) -> dict[uuid.UUID, tuple[str, datetime]]:
    """(reason, at) by subscriber id, the first outcome's for each subscriber."""
    reasons: dict[uuid.UUID, tuple[str, datetime]] = {}
    for outcome in outcomes:
        if outcome.suppress_reason:
            subscriber_id = held[outcome.delivery_id].subscriber_id
            reasons.setdefault(subscriber_id, (outcome.suppress_reason, outcome.at))
    return reasons


def suppression_rows(
    reasons: Mapping[uuid.UUID, tuple[str, datetime]], emails: Mapping[uuid.UUID, str]
) -> list[Row]:
    """One suppression per address hash; an address already suppressed keeps its first row."""
    rows: dict[str, Row] = {}
    for subscriber_id, (reason, at) in reasons.items():
        digest = address_hash(emails[subscriber_id])
        rows.setdefault(
            digest, {"id": uuid.uuid4(), "address_sha256": digest, "reason": reason, "at": at}
        )
    return list(rows.values())


def bounced_subscribers(reasons: Mapping[uuid.UUID, tuple[str, datetime]]) -> list[Row]:
    """Keyed by id; applied to every status but erased, which is a promise to the person."""
    return [
        {"id": subscriber_id, "status": SubscriberStatus.BOUNCED.value, "updated_at": at}
        for subscriber_id, (_, at) in reasons.items()
    ]


def exited_enrollments(reasons: Mapping[uuid.UUID, tuple[str, datetime]]) -> list[Row]:
    """Keyed by subscriber id; applied to each of their open enrollments."""
    return [
        {
            "subscriber_id": subscriber_id,
            "status": EnrollmentStatus.EXITED.value,
            "ended_at": at,
            "end_reason": reason,
        }
        for subscriber_id, (reason, at) in reasons.items()
    ]


def wanted_next(outcomes: Seq[Outcome], held: Held) -> list[tuple[Outcome, HeldDelivery]]:
    """The outcomes that propose a next delivery, with their rows; refused (before anything is
    written) when such a delivery belongs to no enrollment."""
    wanted = [
        (outcome, held[outcome.delivery_id])
        for outcome in outcomes
        if outcome.next_delivery is not None
    ]
    if any(row.enrollment_id is None for _, row in wanted):
        raise ValueError("next_delivery given for a delivery that belongs to no enrollment")
    return wanted


def next_delivery_rows(
    wanted: Seq[tuple[Outcome, HeldDelivery]], open_enrollments: Collection[uuid.UUID]
) -> list[Row]:
    """The rows to insert, in outcome order so the first proposal of a step wins; the unique
    (enrollment_id, step_key) key turns a second enqueue of a step into a no-op."""
    rows: list[Row] = []
    for outcome, row in wanted:
        if row.enrollment_id not in open_enrollments:
            # Ended in this batch or meanwhile (unsubscribe): nothing more to queue.
            continue
        assert outcome.next_delivery is not None and row.enrollment_id is not None
        rows.extend(
            delivery_rows(
                outcome.next_delivery,
                subscriber_id=row.subscriber_id,
                enrollment_id=row.enrollment_id,
                content_version=outcome.content_version or row.content_version,
                now=outcome.at,
            )
        )
    return rows
