"""Leases on claimed deliveries in SQL: renewing them just before sending (with the live consent
state), giving them back, and reaping those whose process died."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence as Seq
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Engine, select, text, update
from sqlalchemy.engine import Connection

from nurture.engine.ports import DeliveryStatus, EnrollmentStatus, LiveState, SubscriberStatus
from nurture.store.models import LEASED_SQL, Delivery, Enrollment, Subscriber, delivery_table
from nurture.store.rules import address_hash, require_aware
from nurture.store.sql.bulk import Bulk
from nurture.store.sql.suppressions import suppressed_hashes

log = logging.getLogger(__name__)


def _unleased() -> dict[str, Any]:
    return {
        "status": DeliveryStatus.QUEUED.value,
        "lease_owner": None,
        "lease_expires_at": None,
    }


def _held_by(owner: str) -> tuple[ColumnElement[bool], ColumnElement[bool]]:
    return (
        delivery_table.c.lease_owner == owner,
        delivery_table.c.status == DeliveryStatus.SENDING.value,
    )


def _not_accepted() -> ColumnElement[bool]:
    # A row a relay already accepted stays leased until a claim records it as sent: queued
    # again, it would be sent again.
    return delivery_table.c.accepted_at.is_(None)


class Leases:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._bulk = Bulk(engine)

    def release(self, delivery_ids: Seq[uuid.UUID], *, owner: str) -> None:
        if not delivery_ids:
            return
        with self._engine.begin() as conn:
            for chunk in self._bulk.batches(list(delivery_ids)):
                conn.execute(
                    update(delivery_table)
                    .where(self._bulk.among(delivery_table.c.id, chunk), *_held_by(owner))
                    .values(_unleased())
                )

    def release_all(self, owner: str) -> int:
        """Give back every lease `owner` holds (graceful shutdown); returns how many. Rows a relay
        accepted keep theirs until it runs out and a claim records them as sent."""
        with self._engine.begin() as conn:
            result = conn.execute(
                update(delivery_table)
                .where(*_held_by(owner), _not_accepted())
                .values(_unleased())
            )
        count = result.rowcount
        if count:
            log.info("released %d leased deliveries of %s", count, owner)
        return count

    def reap_expired(self, now: datetime) -> int:
        """Return `sending` rows whose lease expired at `now` to the queue; returns how many.

        A crash between the SMTP reply and the record leaves such rows; they are sent again with
        the same Message-ID (at-least-once), except those marked accepted, which the next claim
        records as sent."""
        require_aware("now", now)
        with self._engine.begin() as conn:
            result = conn.execute(
                update(delivery_table)
                .where(
                    text(LEASED_SQL),
                    delivery_table.c.lease_expires_at <= now,
                    _not_accepted(),
                )
                .values(_unleased())
            )
        count = result.rowcount
        if count:
            log.warning("reaped %d deliveries whose lease expired", count)
        return count

    def recheck(
        self, delivery_ids: Seq[uuid.UUID], *, owner: str, now: datetime, lease: timedelta
    ) -> dict[uuid.UUID, LiveState]:
        """Just before sending: renew `owner`'s lease on these deliveries to `now + lease` and
        return their current subscriber, suppression and enrollment state. A delivery `owner`
        no longer holds (another process took it after the lease ran out) is left out.

        The renewal is what lets a slow batch outlive its first lease without a second process
        taking (and sending) its last rows; a process that dies stops renewing."""
        require_aware("now", now)
        if not delivery_ids:
            return {}
        rows: list[Any] = []
        with self._engine.begin() as conn:
            for chunk in self._bulk.batches(sorted(delivery_ids)):
                conn.execute(
                    update(delivery_table)
                    .where(self._bulk.among(delivery_table.c.id, chunk), *_held_by(owner))
                    .values(lease_expires_at=now + lease)
                )
                rows.extend(self._live_rows(conn, chunk, owner))
            suppressed = suppressed_hashes(
                self._bulk, conn, (address_hash(row.email) for row in rows)
            )
        return {
            row.id: LiveState(
                subscriber_status=SubscriberStatus(row.subscriber_status),
                suppressed=address_hash(row.email) in suppressed,
                enrollment_status=(
                    EnrollmentStatus(row.enrollment_status)
                    if row.enrollment_status is not None
                    else None
                ),
                paused_until=row.paused_until,
            )
            for row in rows
        }

    def _live_rows(self, conn: Connection, chunk: Seq[uuid.UUID], owner: str) -> list[Any]:
        return list(
            conn.execute(
                select(
                    Delivery.id,
                    Subscriber.email,
                    Subscriber.status.label("subscriber_status"),
                    Enrollment.status.label("enrollment_status"),
                    Enrollment.paused_until,
                )
                .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
                .outerjoin(Enrollment, Enrollment.id == Delivery.enrollment_id)
                .where(
                    self._bulk.among(Delivery.id, chunk),
                    Delivery.lease_owner == owner,
                    Delivery.status == DeliveryStatus.SENDING.value,
                )
            )
        )
