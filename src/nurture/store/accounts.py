"""A subscriber's own lifecycle, as the web app drives it: pending signup, confirmation, unsubscribe,
pause and resume, changed answers, data export and erasure."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Final

from sqlalchemy import Engine, delete, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from nurture.domain.model import Profile
from nurture.engine.ports import (
    ConsentRecord,
    DeliveryKind,
    DeliveryStatus,
    EnrollmentStatus,
    NewEnrollment,
    SubscriberStatus,
)
from nurture.store.models import (
    ConsentEvent,
    Delivery,
    Enrollment,
    Subscriber,
    Suppression,
    consent_event_table,
    delivery_table,
    enrollment_table,
    subscriber_table,
    suppression_table,
)
from nurture.store.repository import SqlStore
from nurture.store.rules import address_hash

log = logging.getLogger(__name__)

OPEN_ENROLLMENT: Final = (EnrollmentStatus.ACTIVE.value, EnrollmentStatus.PAUSED.value)
# Deliveries nobody has picked up yet; leased (`sending`) rows belong to a dispatcher.
WAITING: Final = (DeliveryStatus.QUEUED.value, DeliveryStatus.DEFERRED.value)
# Someone who left may ask again through the form (and must confirm again); a bounced address is
# suppressed and an erased one no longer exists.
RESIGNABLE: Final = (
    SubscriberStatus.PENDING.value,
    SubscriberStatus.UNSUBSCRIBED.value,
    SubscriberStatus.COMPLAINED.value,
)
END_REASON_UNSUBSCRIBED: Final = "unsubscribed"
SUPPRESSION_REASON_ERASED: Final = "erased"
RETRIES: Final = 3


class SignupOutcome(StrEnum):
    QUEUED = "queued"
    """A confirmation email was queued."""
    RECENTLY_QUEUED = "recently_queued"
    """Still pending, and a confirmation is waiting or went out within the resend interval."""
    ALREADY_ACTIVE = "already_active"
    SUPPRESSED = "suppressed"
    UNAVAILABLE = "unavailable"
    """The address bounced (or is otherwise closed): nothing is queued."""


class ConfirmOutcome(StrEnum):
    CONFIRMED = "confirmed"
    ALREADY_CONFIRMED = "already_confirmed"
    NOT_FOUND = "not_found"
    REFUSED = "refused"
    """Not pending any more (unsubscribed since, bounced) or suppressed: an old link must not
    bring anyone back."""


@dataclass(frozen=True)
class PendingSignup:
    email: str  # normalized
    first_name: str | None
    time_zone: str
    hesitations: frozenset[str]
    discreet: bool
    locale: str
    consent: ConsentRecord


@dataclass(frozen=True)
class SignupResult:
    outcome: SignupOutcome
    subscriber_id: uuid.UUID | None


@dataclass(frozen=True)
class EnrollmentState:
    id: uuid.UUID
    sequence_key: str
    status: EnrollmentStatus
    paused_until: datetime | None


@dataclass(frozen=True)
class Account:
    """A subscriber as their own pages show them, with their open enrollments."""

    id: uuid.UUID
    email: str
    first_name: str | None
    status: SubscriberStatus
    locale: str
    time_zone: str
    hesitations: frozenset[str]
    discreet: bool
    created_at: datetime
    confirmed_at: datetime | None
    enrollments: tuple[EnrollmentState, ...]

    @property
    def profile(self) -> Profile:
        return Profile(time_zone=self.time_zone, hesitations=self.hesitations,
                       discreet=self.discreet, locale=self.locale)

    @property
    def paused_until(self) -> datetime | None:
        """The end of the pause when every open enrollment is paused, else None."""
        if not self.enrollments or any(
            item.status is not EnrollmentStatus.PAUSED for item in self.enrollments
        ):
            return None
        ends = [item.paused_until for item in self.enrollments if item.paused_until is not None]
        return max(ends) if ends else None

    @property
    def is_paused(self) -> bool:
        return bool(self.enrollments) and all(
            item.status is EnrollmentStatus.PAUSED for item in self.enrollments
        )


def _require_aware(name: str, value: datetime) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be an aware UTC datetime, got naive {value.isoformat()}")


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


class AccountStore:
    """Each public method is one short transaction; none logs an address, a name or an answer."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    # -- signup and confirmation ------------------------------------------------------------------

    def signup_pending(
        self, signup: PendingSignup, *, now: datetime, resend_interval: timedelta
    ) -> SignupResult:
        """Record a signup and queue one confirmation email, at most one per `resend_interval`.

        An active, suppressed or bounced address is left exactly as it is, so that what a stranger
        types into the form changes nothing for someone who is already subscribed."""
        _require_aware("now", now)
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
        if self._suppressed(conn, signup.email):
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
            self._add_consent(conn, subscriber_id, signup.consent, now)
            self._queue_confirmation(conn, subscriber_id, now)
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
        self._add_consent(conn, subscriber_id, signup.consent, now)
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
        if waiting or (last is not None and now - _aware(last) < resend_interval):
            return SignupResult(SignupOutcome.RECENTLY_QUEUED, subscriber_id)
        self._queue_confirmation(conn, subscriber_id, now)
        return SignupResult(SignupOutcome.QUEUED, subscriber_id)

    def confirm(
        self,
        subscriber_id: uuid.UUID,
        *,
        now: datetime,
        plan: Callable[[Account], NewEnrollment],
    ) -> ConfirmOutcome:
        """Activate a pending subscriber and enroll them in the sequence `plan` builds for them.

        `plan` carries the "confirm" consent record; SqlStore.enroll writes the subscriber, the
        enrollment, the consent event and the first delivery in one transaction."""
        _require_aware("now", now)
        account = self.account(subscriber_id)
        if account is None:
            return ConfirmOutcome.NOT_FOUND
        if account.status is SubscriberStatus.ACTIVE:
            return ConfirmOutcome.ALREADY_CONFIRMED
        if account.status is not SubscriberStatus.PENDING:
            return ConfirmOutcome.REFUSED
        item = plan(account)
        (result,) = SqlStore(self._engine).enroll([item], now=now)
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

    # -- leaving and pausing ----------------------------------------------------------------------

    def unsubscribe(
        self, subscriber_id: uuid.UUID, *, consent: ConsentRecord, now: datetime
    ) -> bool:
        """Stop everything for this subscriber now; False when there is no such subscriber.

        Open enrollments end with reason "unsubscribed" and waiting deliveries are skipped; the
        dispatcher also re-checks the status at send time for rows already leased."""
        _require_aware("now", now)
        with self._engine.begin() as conn:
            status = conn.execute(
                select(Subscriber.status).where(Subscriber.id == subscriber_id).with_for_update()
            ).scalar_one_or_none()
            if status is None:
                return False
            conn.execute(
                update(enrollment_table)
                .where(
                    enrollment_table.c.subscriber_id == subscriber_id,
                    enrollment_table.c.status.in_(OPEN_ENROLLMENT),
                )
                .values(status=EnrollmentStatus.EXITED.value, ended_at=now,
                        end_reason=END_REASON_UNSUBSCRIBED)
            )
            conn.execute(
                update(delivery_table)
                .where(
                    delivery_table.c.subscriber_id == subscriber_id,
                    delivery_table.c.status.in_(WAITING),
                )
                .values(status=DeliveryStatus.SKIPPED.value, skip_reason=END_REASON_UNSUBSCRIBED)
            )
            if status in (SubscriberStatus.PENDING.value, SubscriberStatus.ACTIVE.value):
                conn.execute(
                    update(subscriber_table)
                    .where(subscriber_table.c.id == subscriber_id)
                    .values(status=SubscriberStatus.UNSUBSCRIBED.value, updated_at=now)
                )
                # Only a real change is a consent event; repeated clicks leave one record.
                self._add_consent(conn, subscriber_id, consent, now)
        log.info("unsubscribe handled")
        return True

    def pause(
        self, subscriber_id: uuid.UUID, *, until: datetime, consent: ConsentRecord, now: datetime
    ) -> int:
        """Pause every open enrollment until `until`; returns how many."""
        _require_aware("now", now)
        _require_aware("until", until)
        if until <= now:
            raise ValueError("a pause must end in the future")
        with self._engine.begin() as conn:
            count = conn.execute(
                update(enrollment_table)
                .where(
                    enrollment_table.c.subscriber_id == subscriber_id,
                    enrollment_table.c.status.in_(OPEN_ENROLLMENT),
                )
                .values(status=EnrollmentStatus.PAUSED.value, paused_until=until)
            ).rowcount
            if count:
                self._add_consent(conn, subscriber_id, consent, now)
        return count

    def resume(self, subscriber_id: uuid.UUID, *, consent: ConsentRecord, now: datetime) -> int:
        """End the pause of every paused enrollment; returns how many.

        A waiting delivery due later than `now` keeps its time; one due earlier becomes due now."""
        _require_aware("now", now)
        with self._engine.begin() as conn:
            paused = list(conn.scalars(
                select(Enrollment.id)
                .where(
                    Enrollment.subscriber_id == subscriber_id,
                    Enrollment.status == EnrollmentStatus.PAUSED.value,
                )
                .with_for_update()
            ))
            if not paused:
                return 0
            conn.execute(
                update(enrollment_table)
                .where(enrollment_table.c.id.in_(paused))
                .values(status=EnrollmentStatus.ACTIVE.value, paused_until=None)
            )
            conn.execute(
                update(delivery_table)
                .where(
                    delivery_table.c.enrollment_id.in_(paused),
                    delivery_table.c.status == DeliveryStatus.QUEUED.value,
                    delivery_table.c.due_at < now,
                )
                .values(due_at=now)
            )
            self._add_consent(conn, subscriber_id, consent, now)
        return len(paused)

    # -- answers ----------------------------------------------------------------------------------

    def update_answers(
        self, subscriber_id: uuid.UUID, hesitations: frozenset[str], *, now: datetime
    ) -> bool:
        """Replace the hesitations; later steps are chosen with the new answers."""
        return self._update(subscriber_id, now, hesitations=sorted(hesitations))

    def set_discreet(self, subscriber_id: uuid.UUID, discreet: bool, *, now: datetime) -> bool:
        return self._update(subscriber_id, now, discreet=discreet)

    def _update(self, subscriber_id: uuid.UUID, now: datetime, **values: Any) -> bool:
        _require_aware("now", now)
        with self._engine.begin() as conn:
            count = conn.execute(
                update(subscriber_table)
                .where(subscriber_table.c.id == subscriber_id)
                .values(updated_at=now, **values)
            ).rowcount
        return bool(count)

    # -- reading, export and erasure --------------------------------------------------------------

    def account(self, subscriber_id: uuid.UUID) -> Account | None:
        with self._engine.connect() as conn:
            row = conn.execute(
                select(subscriber_table).where(subscriber_table.c.id == subscriber_id)
            ).one_or_none()
            if row is None:
                return None
            enrollments = conn.execute(
                select(Enrollment.id, Enrollment.sequence_key, Enrollment.status,
                       Enrollment.paused_until)
                .where(
                    Enrollment.subscriber_id == subscriber_id,
                    Enrollment.status.in_(OPEN_ENROLLMENT),
                )
                .order_by(Enrollment.enrolled_at, Enrollment.sequence_key)
            ).all()
        return Account(
            id=row.id,
            email=row.email,
            first_name=row.first_name,
            status=SubscriberStatus(row.status),
            locale=row.locale,
            time_zone=row.time_zone,
            hesitations=frozenset(row.hesitations or ()),
            discreet=bool(row.discreet),
            created_at=row.created_at,
            confirmed_at=row.confirmed_at,
            enrollments=tuple(
                EnrollmentState(id=item.id, sequence_key=item.sequence_key,
                                status=EnrollmentStatus(item.status),
                                paused_until=item.paused_until)
                for item in enrollments
            ),
        )

    def export(self, subscriber_id: uuid.UUID) -> dict[str, Any] | None:
        """Everything held about one subscriber, as JSON-ready data; None when nothing is held.

        Lease owners and expiry are scheduler internals about our processes, not about the person."""
        with self._engine.connect() as conn:
            row = conn.execute(
                select(subscriber_table).where(subscriber_table.c.id == subscriber_id)
            ).one_or_none()
            if row is None:
                return None
            events = conn.execute(
                select(ConsentEvent.kind, ConsentEvent.source, ConsentEvent.at, ConsentEvent.ip,
                       ConsentEvent.user_agent, ConsentEvent.consent_text_sha256)
                .where(ConsentEvent.subscriber_id == subscriber_id)
                .order_by(ConsentEvent.at, ConsentEvent.id)
            ).all()
            enrollments = conn.execute(
                select(Enrollment.id, Enrollment.sequence_key, Enrollment.status,
                       Enrollment.paused_until, Enrollment.last_step_key, Enrollment.last_sent_at,
                       Enrollment.content_version, Enrollment.enrolled_at, Enrollment.ended_at,
                       Enrollment.end_reason)
                .where(Enrollment.subscriber_id == subscriber_id)
                .order_by(Enrollment.enrolled_at, Enrollment.id)
            ).all()
            deliveries = conn.execute(
                select(Delivery.id, Delivery.kind, Delivery.enrollment_id, Delivery.step_key,
                       Delivery.status, Delivery.due_at, Delivery.attempts, Delivery.message_id,
                       Delivery.smtp_code, Delivery.last_error, Delivery.skip_reason,
                       Delivery.content_version, Delivery.created_at, Delivery.sent_at)
                .where(Delivery.subscriber_id == subscriber_id)
                .order_by(Delivery.created_at, Delivery.due_at, Delivery.id)
            ).all()
            suppressed = self._suppressed(conn, row.email)
        return {
            "subscriber": {
                "id": str(row.id),
                "email": row.email,
                "first_name": row.first_name,
                "locale": row.locale,
                "time_zone": row.time_zone,
                "hesitations": list(row.hesitations or ()),
                "discreet": bool(row.discreet),
                "status": row.status,
                "created_at": _iso(row.created_at),
                "confirmed_at": _iso(row.confirmed_at),
                "updated_at": _iso(row.updated_at),
                "suppressed": suppressed,
            },
            "consent_events": [
                {"kind": e.kind, "source": e.source, "at": _iso(e.at), "ip": e.ip,
                 "user_agent": e.user_agent, "consent_text_sha256": e.consent_text_sha256}
                for e in events
            ],
            "enrollments": [
                {"id": str(e.id), "sequence_key": e.sequence_key, "status": e.status,
                 "paused_until": _iso(e.paused_until), "last_step_key": e.last_step_key,
                 "last_sent_at": _iso(e.last_sent_at), "content_version": e.content_version,
                 "enrolled_at": _iso(e.enrolled_at), "ended_at": _iso(e.ended_at),
                 "end_reason": e.end_reason}
                for e in enrollments
            ],
            "deliveries": [
                {"id": str(d.id), "kind": d.kind,
                 "enrollment_id": str(d.enrollment_id) if d.enrollment_id else None,
                 "step_key": d.step_key, "status": d.status, "due_at": _iso(d.due_at),
                 "attempts": d.attempts, "message_id": d.message_id, "smtp_code": d.smtp_code,
                 "last_error": d.last_error, "skip_reason": d.skip_reason,
                 "content_version": d.content_version, "created_at": _iso(d.created_at),
                 "sent_at": _iso(d.sent_at)}
                for d in deliveries
            ],
        }

    def erase(self, subscriber_id: uuid.UUID, *, now: datetime) -> bool:
        """Delete the subscriber and every row that refers to them; keep only the hash of the
        address on the suppression list, so that it is never emailed again. False if not found."""
        _require_aware("now", now)
        with self._engine.begin() as conn:
            email = conn.execute(
                select(Subscriber.email).where(Subscriber.id == subscriber_id).with_for_update()
            ).scalar_one_or_none()
            if email is None:
                return False
            self._suppress(conn, address_hash(email), SUPPRESSION_REASON_ERASED, now)
            # Explicit deletes rather than ON DELETE CASCADE alone: erasure must not depend on a
            # pragma being on in every SQLite connection.
            for table in (delivery_table, enrollment_table, consent_event_table):
                conn.execute(delete(table).where(table.c.subscriber_id == subscriber_id))
            conn.execute(delete(subscriber_table).where(subscriber_table.c.id == subscriber_id))
        log.info("subscriber erased")
        return True

    def purge_unconfirmed(self, *, older_than: datetime) -> int:
        """Delete signups never confirmed and untouched since `older_than` (housekeeping): data
        given without a confirmed address is not kept indefinitely. Returns how many."""
        _require_aware("older_than", older_than)
        with self._engine.begin() as conn:
            ids = list(conn.scalars(
                select(Subscriber.id).where(
                    Subscriber.status == SubscriberStatus.PENDING.value,
                    Subscriber.confirmed_at.is_(None),
                    Subscriber.updated_at < older_than,
                )
            ))
            for start in range(0, len(ids), 500):
                chunk = ids[start:start + 500]
                for table in (delivery_table, enrollment_table, consent_event_table):
                    conn.execute(delete(table).where(table.c.subscriber_id.in_(chunk)))
                conn.execute(delete(subscriber_table).where(subscriber_table.c.id.in_(chunk)))
        if ids:
            log.info("purged unconfirmed signups", extra={"count": len(ids)})
        return len(ids)

    def is_suppressed(self, email: str) -> bool:
        with self._engine.connect() as conn:
            return self._suppressed(conn, email)

    # -- helpers ----------------------------------------------------------------------------------

    def _status(self, subscriber_id: uuid.UUID) -> str | None:
        with self._engine.connect() as conn:
            status: str | None = conn.execute(
                select(Subscriber.status).where(Subscriber.id == subscriber_id)
            ).scalar_one_or_none()
        return status

    @staticmethod
    def _suppressed(conn: Connection, email: str) -> bool:
        found = conn.execute(
            select(Suppression.id).where(Suppression.address_sha256 == address_hash(email))
        ).first()
        return found is not None

    def _suppress(self, conn: Connection, digest: str, reason: str, now: datetime) -> None:
        values = {"id": uuid.uuid4(), "address_sha256": digest, "reason": reason, "at": now}
        dialect = conn.dialect.name
        if dialect == "postgresql":
            conn.execute(postgresql.insert(suppression_table).values(**values)
                         .on_conflict_do_nothing(index_elements=["address_sha256"]))
        elif dialect == "sqlite":
            conn.execute(sqlite.insert(suppression_table).values(**values)
                         .on_conflict_do_nothing(index_elements=["address_sha256"]))
        else:
            raise ValueError(f"unsupported database dialect {dialect}")

    @staticmethod
    def _add_consent(
        conn: Connection, subscriber_id: uuid.UUID, consent: ConsentRecord, now: datetime
    ) -> None:
        conn.execute(insert(consent_event_table).values(
            id=uuid.uuid4(), subscriber_id=subscriber_id, kind=consent.kind,
            source=consent.source[:200], at=now, ip=consent.ip,
            user_agent=consent.user_agent[:512] if consent.user_agent else None,
            consent_text_sha256=consent.consent_text_sha256,
        ))

    @staticmethod
    def _queue_confirmation(conn: Connection, subscriber_id: uuid.UUID, now: datetime) -> None:
        conn.execute(insert(delivery_table).values(
            id=uuid.uuid4(), kind=DeliveryKind.CONFIRMATION.value, subscriber_id=subscriber_id,
            enrollment_id=None, step_key=None, status=DeliveryStatus.QUEUED.value, due_at=now,
            attempts=0, lease_owner=None, lease_expires_at=None, message_id=None, smtp_code=None,
            last_error=None, skip_reason=None, content_version=None, created_at=now, sent_at=None,
        ))


def _aware(value: datetime) -> datetime:
    # Belt and braces: an aggregate's result type is inferred, and a naive value would not compare.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value
