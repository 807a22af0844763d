"""The rules every store keeps, SQL or in memory: which statuses count as done or open, who may be
enrolled again, what a refusal says, which outcomes are refused, and how an address is hashed."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence as Seq
from datetime import datetime
from typing import Final

from nurture.engine.ports import (
    AcceptedSend,
    DeliveryStatus,
    EnrollmentStatus,
    EnrollResult,
    NewEnrollment,
    Outcome,
    SubscriberStatus,
)

DONE: Final = frozenset(
    {
        DeliveryStatus.SENT.value,
        DeliveryStatus.SKIPPED.value,
        DeliveryStatus.FAILED.value,
        DeliveryStatus.BOUNCED.value,
    }
)
"""A step with a delivery in one of these is done: the planner never offers it again."""
OPEN_ENROLLMENT: Final = (EnrollmentStatus.ACTIVE.value, EnrollmentStatus.PAUSED.value)
CLAIMABLE: Final = (DeliveryStatus.QUEUED.value, DeliveryStatus.DEFERRED.value)
"""Deliveries waiting for a dispatcher; leased (`sending`) rows belong to one."""
# Subscribers in these states may be (re)activated by any enrollment.
ENROLLABLE: Final = (SubscriberStatus.PENDING.value, SubscriberStatus.ACTIVE.value)
# A fresh explicit opt-in by the person themselves may bring back someone who had left;
# an import or an operator may not.
OPT_IN_KINDS: Final = frozenset({"confirm", "resubscribe"})
REACTIVATABLE_BY_OPT_IN: Final = (
    SubscriberStatus.UNSUBSCRIBED.value,
    SubscriberStatus.COMPLAINED.value,
)
NIL_UUID: Final = uuid.UUID(int=0)

REASON_SUPPRESSED: Final = "suppressed"
REASON_ALREADY_ENROLLED: Final = "already enrolled"
SUPPRESSION_REASON_MAX: Final = 200


def address_hash(email: str) -> str:
    """sha256 hex of the normalized address: the suppression list keeps this, not the address."""
    return hashlib.sha256(email.strip().lower().encode("utf-8")).hexdigest()


def accepted_send(accepted_at: datetime | None, smtp_code: int | None, relay: str | None,
                  content_version: str | None) -> AcceptedSend | None:
    """A claimed row's relay acceptance as the dispatcher reads it: none unless one was marked."""
    if accepted_at is None:
        return None
    return AcceptedSend(accepted_at, smtp_code, relay, content_version)


def require_aware(name: str, value: datetime) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be an aware UTC datetime, got naive {value.isoformat()}")


def may_enroll(subscriber_status: str, consent_kind: str) -> bool:
    """Whether an enrollment with this kind of consent may (re)activate a subscriber we hold."""
    return subscriber_status in ENROLLABLE or (
        subscriber_status in REACTIVATABLE_BY_OPT_IN and consent_kind in OPT_IN_KINDS
    )


def refused(item: NewEnrollment, subscriber_id: uuid.UUID, reason: str) -> EnrollResult:
    return EnrollResult(
        email=item.email,
        subscriber_id=subscriber_id,
        enrollment_id=None,
        created=False,
        reason=reason,
    )


def replaceable_by(status: SubscriberStatus) -> tuple[str, ...]:
    """The subscriber statuses feedback of this kind (BOUNCED or COMPLAINED) overrides.

    A complaint overrides a bounce or an unsubscribe; a bounce leaves an unsubscribe or a
    complaint as it is, since those record what the person said."""
    if status not in (SubscriberStatus.BOUNCED, SubscriberStatus.COMPLAINED):
        raise ValueError(f"suppress_subscribers sets BOUNCED or COMPLAINED, not {status}")
    replaceable: tuple[str, ...] = (SubscriberStatus.PENDING.value, SubscriberStatus.ACTIVE.value)
    if status is SubscriberStatus.COMPLAINED:
        replaceable += (SubscriberStatus.UNSUBSCRIBED.value, SubscriberStatus.BOUNCED.value)
    return replaceable


def check_outcome(outcome: Outcome) -> None:
    """Refuse contradictory outcomes before anything is written: they are programming errors."""
    require_aware("Outcome.at", outcome.at)
    if outcome.status is DeliveryStatus.SENDING:
        raise ValueError(f"outcome for {outcome.delivery_id}: SENDING is not an outcome")
    if outcome.next_delivery is not None and outcome.status not in (
        DeliveryStatus.SENT,
        DeliveryStatus.SKIPPED,
    ):
        raise ValueError(
            f"outcome for {outcome.delivery_id}: next_delivery only goes with SENT or SKIPPED"
        )
    if outcome.end_enrollment is not None and outcome.end_enrollment not in (
        EnrollmentStatus.COMPLETED,
        EnrollmentStatus.EXITED,
    ):
        raise ValueError(
            f"outcome for {outcome.delivery_id}: end_enrollment must be COMPLETED or EXITED"
        )


def outcomes_by_delivery(outcomes: Seq[Outcome]) -> dict[uuid.UUID, Outcome]:
    """The outcomes by delivery id, in their order, each checked; two for one delivery are refused."""
    by_id: dict[uuid.UUID, Outcome] = {}
    for outcome in outcomes:
        check_outcome(outcome)
        if outcome.delivery_id in by_id:
            raise ValueError(f"two outcomes for delivery {outcome.delivery_id}")
        by_id[outcome.delivery_id] = outcome
    return by_id
