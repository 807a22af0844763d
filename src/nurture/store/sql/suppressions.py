"""The suppression list in SQL: which addresses are on it, and bounces and complaints reported
after sending (the FeedbackStore port) that put subscribers on it."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Mapping
from collections.abc import Sequence as Seq
from datetime import datetime

from sqlalchemy import Engine, or_, select, text, update
from sqlalchemy.engine import Connection

from nurture.engine.ports import DeliveryStatus, EnrollmentStatus, SubscriberStatus
from nurture.store.models import (
    CLAIMABLE_SQL,
    Delivery,
    Subscriber,
    Suppression,
    delivery_table,
    enrollment_table,
    subscriber_table,
    suppression_table,
)
from nurture.store.rules import (
    SUPPRESSION_REASON_MAX,
    address_hash,
    replaceable_by,
    require_aware,
)
from nurture.store.sql.bulk import Bulk, is_open

log = logging.getLogger(__name__)


def suppressed_hashes(bulk: Bulk, conn: Connection, hashes: Iterable[str]) -> set[str]:
    """Those of these address hashes that are on the suppression list."""
    found: set[str] = set()
    for chunk in bulk.batches(sorted(set(hashes))):
        found.update(
            conn.scalars(
                select(Suppression.address_sha256).where(
                    bulk.among(Suppression.address_sha256, chunk)
                )
            )
        )
    return found


def subscriber_emails(
    bulk: Bulk, conn: Connection, subscriber_ids: Seq[uuid.UUID]
) -> dict[uuid.UUID, str]:
    """The addresses of those of these subscribers that exist."""
    emails: dict[uuid.UUID, str] = {}
    for chunk in bulk.batches(subscriber_ids):
        emails.update(
            (subscriber_id, email)
            for subscriber_id, email in conn.execute(
                select(Subscriber.id, Subscriber.email).where(bulk.among(Subscriber.id, chunk))
            )
        )
    return emails


class Suppressions:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._bulk = Bulk(engine)

    def is_suppressed(self, email: str) -> bool:
        with self._engine.connect() as conn:
            return bool(suppressed_hashes(self._bulk, conn, [address_hash(email)]))

    def feedback_targets(
        self, *, emails: Seq[str], delivery_ids: Seq[uuid.UUID]
    ) -> tuple[dict[str, uuid.UUID], dict[uuid.UUID, uuid.UUID]]:
        """Subscriber ids by (normalized) address and by delivery id, for those that exist."""
        bulk = self._bulk
        by_email: dict[str, uuid.UUID] = {}
        by_delivery: dict[uuid.UUID, uuid.UUID] = {}
        wanted = sorted({email.strip().lower() for email in emails})
        with self._engine.connect() as conn:
            for chunk in bulk.batches(wanted):
                by_email.update(
                    (email, subscriber_id)
                    for subscriber_id, email in conn.execute(
                        select(Subscriber.id, Subscriber.email).where(
                            bulk.among(Subscriber.email, chunk)
                        )
                    )
                )
            for id_chunk in bulk.batches(sorted(set(delivery_ids))):
                by_delivery.update(
                    (delivery_id, subscriber_id)
                    for delivery_id, subscriber_id in conn.execute(
                        select(Delivery.id, Delivery.subscriber_id).where(
                            bulk.among(Delivery.id, id_chunk)
                        )
                    )
                )
        return by_email, by_delivery

    def suppress_subscribers(
        self, reasons: Mapping[uuid.UUID, str], *, status: SubscriberStatus, now: datetime
    ) -> int:
        """Suppress these subscribers' addresses (reason per subscriber), set their status
        (BOUNCED or COMPLAINED), end their open enrollments and skip their waiting deliveries;
        returns how many addresses were not suppressed before. Idempotent.

        A complaint overrides a bounce or an unsubscribe; a bounce leaves an unsubscribe or a
        complaint as it is, since those record what the person said. Leased rows are left to the
        dispatcher, which re-checks suppression just before sending."""
        require_aware("now", now)
        replaceable = replaceable_by(status)
        if not reasons:
            return 0
        with self._engine.begin() as conn:
            emails = subscriber_emails(self._bulk, conn, sorted(reasons))
            digests = {subscriber_id: address_hash(email) for subscriber_id, email in emails.items()}
            before = suppressed_hashes(self._bulk, conn, digests.values())
            fresh = {
                digest: {
                    "id": uuid.uuid4(),
                    "address_sha256": digest,
                    "reason": reasons[subscriber_id][:SUPPRESSION_REASON_MAX],
                    "at": now,
                }
                for subscriber_id, digest in digests.items()
                if digest not in before
            }
            self._bulk.insert(
                conn, suppression_table, list(fresh.values()), conflict=["address_sha256"]
            )
            for chunk in self._bulk.batches(sorted(emails)):
                self._end_everything(conn, chunk, status, replaceable, now)
        log.info(
            "addresses suppressed after feedback",
            extra={"status": status.value, "subscribers": len(emails), "new": len(fresh)},
        )
        return len(fresh)

    def _end_everything(
        self,
        conn: Connection,
        subscriber_ids: Seq[uuid.UUID],
        status: SubscriberStatus,
        replaceable: tuple[str, ...],
        now: datetime,
    ) -> None:
        """Set the subscribers' status where it may change, end their open enrollments and skip
        their waiting deliveries."""
        among = self._bulk.among
        conn.execute(
            update(subscriber_table)
            .where(
                among(subscriber_table.c.id, subscriber_ids),
                or_(*(subscriber_table.c.status == value for value in replaceable)),
            )
            .values(status=status.value, updated_at=now)
        )
        conn.execute(
            update(enrollment_table)
            .where(
                among(enrollment_table.c.subscriber_id, subscriber_ids),
                is_open(enrollment_table.c.status),
            )
            .values(status=EnrollmentStatus.EXITED.value, ended_at=now, end_reason=status.value)
        )
        conn.execute(
            update(delivery_table)
            .where(among(delivery_table.c.subscriber_id, subscriber_ids), text(CLAIMABLE_SQL))
            .values(status=DeliveryStatus.SKIPPED.value, skip_reason=status.value)
        )
