"""Signing up and confirming: a pending subscriber with one confirmation email at a time, then,
on confirmation, the subscriber made active and enrolled."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Final

from sqlalchemy import Engine, func, insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from nurture.engine.ports import DeliveryKind, DeliveryStatus, NewEnrollment, SubscriberStatus
from nurture.store.accounts.personal_data import read_account
from nurture.store.accounts.statements import (
    WAITING,
    add_consent,
    is_suppressed,
    queue_confirmation,
    subscriber_status,
)
from nurture.store.accounts.types import (
    Account,
    ConfirmOutcome,
    PendingSignup,
    SignupOutcome,
    SignupResult,
)
from nurture.store.models import Subscriber, delivery_table, subscriber_table
from nurture.store.rules import require_aware
from nurture.store.sql.enrollments import Enrollments

log = logging.getLogger(__name__)

# Someone who left may ask again through the form (and must confirm again); a bounced address is
# suppressed and an erased one no longer exists.
RESIGNABLE: Final = (
    SubscriberStatus.PENDING.value,
    SubscriberStatus.UNSUBSCRIBED.value,
    SubscriberStatus.COMPLAINED.value,
)
RETRIES: Final = 3


class Signups:
    """Each public method is one short transaction; none logs an address, a name or an answer."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def signup_pending(
        self, signup: PendingSignup, *, now: datetime, resend_interval: timedelta
    ) -> SignupResult:
        """Record a signup and queue one confirmation email, at most one per `resend_interval`.

        An active, suppressed or bounced address is left exactly as it is, so that what a stranger
        types into the form changes nothing for someone who is already subscribed."""
        require_aware("now", now)
        for attempt in range(1, RETRIES + 1):
            try:
                with self._engine.begin() as conn:
                    result = self._signup(conn, signup, now, resend_interval)
                log.info("signup handled", extra={"outcome": result.outcome.value})
                return result
            except IntegrityError:
                # Two first signups of one address at once (PostgreSQL): the loser reads again.
                if attempt == RETRIES:
                    raise
        raise AssertionError("unreachable")

    def _signup(
        self, conn: Connection, signup: PendingSignup, now: datetime, resend_interval: timedelta
    ) -> SignupResult:
        if is_suppressed(conn, signup.email):
            return SignupResult(SignupOutcome.SUPPRESSED, None)
        row = conn.execute(
            select(Subscriber.id, Subscriber.status)
            .where(Subscriber.email == signup.email)
            .with_for_update()
        ).one_or_none()
        profile = {
            "first_name": signup.first_name,
            "locale": signup.locale,
            "time_zone": signup.time_zone,
            "hesitations": sorted(signup.hesitations),
            "discreet": signup.discreet,
            "updated_at": now,
        }
        if row is None:
            subscriber_id = uuid.uuid4()
            conn.execute(insert(subscriber_table).values(
                id=subscriber_id, email=signup.email, status=SubscriberStatus.PENDING.value,
                created_at=now, confirmed_at=None, **profile))
            add_consent(conn, subscriber_id, signup.consent, now)
            queue_confirmation(conn, subscriber_id, now)
            return SignupResult(SignupOutcome.QUEUED, subscriber_id)
        subscriber_id = row.id
        if row.status == SubscriberStatus.ACTIVE.value:
            return SignupResult(SignupOutcome.ALREADY_ACTIVE, subscriber_id)
        if row.status not in RESIGNABLE:
            return SignupResult(SignupOutcome.UNAVAILABLE, subscriber_id)
        conn.execute(
            update(subscriber_table)
            .where(subscriber_table.c.id == subscriber_id)
            .values(status=SubscriberStatus.PENDING.value, **profile)
        )
        add_consent(conn, subscriber_id, signup.consent, now)
        if self._recently_asked(conn, subscriber_id, now, resend_interval):
            return SignupResult(SignupOutcome.RECENTLY_QUEUED, subscriber_id)
        queue_confirmation(conn, subscriber_id, now)
        return SignupResult(SignupOutcome.QUEUED, subscriber_id)

    @staticmethod
    def _recently_asked(
        conn: Connection, subscriber_id: uuid.UUID, now: datetime, resend_interval: timedelta
    ) -> bool:
        """A confirmation is waiting, or the last one was queued within `resend_interval`."""
        waiting = conn.execute(
            select(func.count()).select_from(delivery_table).where(
                delivery_table.c.subscriber_id == subscriber_id,
                delivery_table.c.kind == DeliveryKind.CONFIRMATION.value,
                delivery_table.c.status.in_((*WAITING, DeliveryStatus.SENDING.value)),
            )
        ).scalar_one()
        last = conn.execute(
            select(func.max(delivery_table.c.created_at)).where(
                delivery_table.c.subscriber_id == subscriber_id,
                delivery_table.c.kind == DeliveryKind.CONFIRMATION.value,
            )
        ).scalar_one()
        return bool(waiting) or (last is not None and now - _aware(last) < resend_interval)

    def confirm(
        self,
        subscriber_id: uuid.UUID,
        *,
        now: datetime,
        plan: Callable[[Account], NewEnrollment],
    ) -> ConfirmOutcome:
        """Activate a pending subscriber and enroll them in the sequence `plan` builds for them.

        `plan` carries the "confirm" consent record; the store's enroll writes the subscriber, the
        enrollment, the consent event and the first delivery in one transaction."""
        require_aware("now", now)
        with self._engine.connect() as conn:
            account = read_account(conn, subscriber_id)
        if account is None:
            return ConfirmOutcome.NOT_FOUND
        if account.status is SubscriberStatus.ACTIVE:
            return ConfirmOutcome.ALREADY_CONFIRMED
        if account.status is not SubscriberStatus.PENDING:
            return ConfirmOutcome.REFUSED
        (result,) = Enrollments(self._engine).enroll([plan(account)], now=now)
        if result.created:
            outcome = ConfirmOutcome.CONFIRMED
        elif result.subscriber_id == subscriber_id and self._status(subscriber_id) == "active":
            # A second click that raced the first: the first one enrolled them.
            outcome = ConfirmOutcome.ALREADY_CONFIRMED
        else:
            outcome = ConfirmOutcome.REFUSED
        if outcome is not ConfirmOutcome.REFUSED:
            with self._engine.begin() as conn:
                # A resend still in the queue would ask someone already confirmed to confirm.
                conn.execute(
                    update(delivery_table)
                    .where(
                        delivery_table.c.subscriber_id == subscriber_id,
                        delivery_table.c.kind == DeliveryKind.CONFIRMATION.value,
                        delivery_table.c.status.in_(WAITING),
                    )
                    .values(status=DeliveryStatus.SKIPPED.value, skip_reason="confirmed")
                )
        log.info("confirmation handled", extra={"outcome": outcome.value})
        return outcome

    def _status(self, subscriber_id: uuid.UUID) -> str | None:
        with self._engine.connect() as conn:
            return subscriber_status(conn, subscriber_id)


def _aware(value: datetime) -> datetime:
    # Belt and braces: an aggregate's result type is inferred, and a naive value would not compare.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value
