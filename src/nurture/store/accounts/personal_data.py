"""What the store holds about one person, as they may see, take away or have erased: their
account, an export of everything, erasure, and the purge of signups never confirmed."""

from __future__ import annotations

import logging
import uuid
from datetime import datetime
from typing import Any, Final

from sqlalchemy import Engine, delete, select
from sqlalchemy.engine import Connection

from nurture.engine.ports import EnrollmentStatus, Progress, SubscriberStatus
from nurture.store.accounts.statements import is_suppressed, suppress
from nurture.store.accounts.types import Account, EnrollmentState
from nurture.store.clicks import delete_clicks_of
from nurture.store.models import (
    ConsentEvent,
    Delivery,
    Enrollment,
    Subscriber,
    consent_event_table,
    delivery_table,
    enrollment_table,
    subscriber_table,
)
from nurture.store.rules import OPEN_ENROLLMENT, address_hash, require_aware

log = logging.getLogger(__name__)

SUPPRESSION_REASON_ERASED: Final = "erased"
PURGE_CHUNK: Final = 500


def read_account(conn: Connection, subscriber_id: uuid.UUID) -> Account | None:
    row = conn.execute(
        select(subscriber_table).where(subscriber_table.c.id == subscriber_id)
    ).one_or_none()
    if row is None:
        return None
    enrollments = conn.execute(
        select(Enrollment.id, Enrollment.sequence_key, Enrollment.status, Enrollment.paused_until)
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


class PersonalData:
    """Each public method is one short transaction; none logs an address, a name or an answer."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def account(self, subscriber_id: uuid.UUID) -> Account | None:
        with self._engine.connect() as conn:
            return read_account(conn, subscriber_id)

    def subscriber_id(self, email: str) -> uuid.UUID | None:
        """The id of the subscriber with this normalized address, if there is one."""
        with self._engine.connect() as conn:
            found: uuid.UUID | None = conn.execute(
                select(subscriber_table.c.id).where(subscriber_table.c.email == email)).scalar()
        return found

    def is_suppressed(self, email: str) -> bool:
        with self._engine.connect() as conn:
            return is_suppressed(conn, email)

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
            suppressed = is_suppressed(conn, row.email)
        return {
            "subscriber": _subscriber_export(row, suppressed),
            "consent_events": [_consent_export(event) for event in events],
            "enrollments": [_enrollment_export(enrollment) for enrollment in enrollments],
            "deliveries": [_delivery_export(delivery) for delivery in deliveries],
        }

    def erase(self, subscriber_id: uuid.UUID, *, now: datetime) -> bool:
        """Delete the subscriber and every row that refers to them; keep only the hash of the
        address on the suppression list, so that it is never emailed again. False if not found."""
        require_aware("now", now)
        with self._engine.begin() as conn:
            email = conn.execute(
                select(Subscriber.email).where(Subscriber.id == subscriber_id).with_for_update()
            ).scalar_one_or_none()
            if email is None:
                return False
            suppress(conn, address_hash(email), SUPPRESSION_REASON_ERASED, now)
            # Explicit deletes rather than ON DELETE CASCADE alone: erasure must not depend on a
            # pragma being on in every SQLite connection.
            delete_clicks_of(conn, delivery_table.c.subscriber_id == subscriber_id)
            for table in (delivery_table, enrollment_table, consent_event_table):
                conn.execute(delete(table).where(table.c.subscriber_id == subscriber_id))
            conn.execute(delete(subscriber_table).where(subscriber_table.c.id == subscriber_id))
        log.info("subscriber erased")
        return True

    def purge_unconfirmed(self, *, older_than: datetime, progress: Progress | None = None) -> int:
        """Delete signups never confirmed and untouched since `older_than` (housekeeping): data
        given without a confirmed address is not kept indefinitely. Returns how many; `progress`
        hears (deleted so far, all to delete) after each chunk."""
        require_aware("older_than", older_than)
        with self._engine.begin() as conn:
            ids = list(conn.scalars(
                select(Subscriber.id).where(
                    Subscriber.status == SubscriberStatus.PENDING.value,
                    Subscriber.confirmed_at.is_(None),
                    Subscriber.updated_at < older_than,
                )
            ))
            for start in range(0, len(ids), PURGE_CHUNK):
                chunk = ids[start:start + PURGE_CHUNK]
                delete_clicks_of(conn, delivery_table.c.subscriber_id.in_(chunk))
                for table in (delivery_table, enrollment_table, consent_event_table):
                    conn.execute(delete(table).where(table.c.subscriber_id.in_(chunk)))
                conn.execute(delete(subscriber_table).where(subscriber_table.c.id.in_(chunk)))
                if progress is not None:
                    progress(start + len(chunk), len(ids))
        if progress is not None and not ids:
            progress(0, 0)
        if ids:
            log.info("purged unconfirmed signups", extra={"count": len(ids)})
        return len(ids)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _subscriber_export(row: Any, suppressed: bool) -> dict[str, Any]:
    return {
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
    }


def _consent_export(e: Any) -> dict[str, Any]:
    return {"kind": e.kind, "source": e.source, "at": _iso(e.at), "ip": e.ip,
            "user_agent": e.user_agent, "consent_text_sha256": e.consent_text_sha256}


def _enrollment_export(e: Any) -> dict[str, Any]:
    return {"id": str(e.id), "sequence_key": e.sequence_key, "status": e.status,
            "paused_until": _iso(e.paused_until), "last_step_key": e.last_step_key,
            "last_sent_at": _iso(e.last_sent_at), "content_version": e.content_version,
            "enrolled_at": _iso(e.enrolled_at), "ended_at": _iso(e.ended_at),
            "end_reason": e.end_reason}


def _delivery_export(d: Any) -> dict[str, Any]:
    return {"id": str(d.id), "kind": d.kind,
            "enrollment_id": str(d.enrollment_id) if d.enrollment_id else None,
            "step_key": d.step_key, "status": d.status, "due_at": _iso(d.due_at),
            "attempts": d.attempts, "message_id": d.message_id, "smtp_code": d.smtp_code,
            "last_error": d.last_error, "skip_reason": d.skip_reason,
            "content_version": d.content_version, "created_at": _iso(d.created_at),
            "sent_at": _iso(d.sent_at)}
