"""Enrolling in SQL: what the batch needs to know read in bulk (subscribers held, suppressed
addresses, open enrollments), the rows `enrollment_rows` plans written in bulk, and a retry when
another writer raced the batch."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence as Seq
from datetime import datetime
from typing import Any, Final

from sqlalchemy import Engine, select
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from nurture.engine.ports import EnrollResult, NewEnrollment, Progress
from nurture.store.enrollment_rows import EnrollmentBatch, plan_enrollments
from nurture.store.models import (
    Enrollment,
    Subscriber,
    consent_event_table,
    delivery_table,
    enrollment_table,
    subscriber_table,
)
from nurture.store.rules import address_hash, require_aware
from nurture.store.sql.bulk import Bulk, is_open
from nurture.store.sql.suppressions import suppressed_hashes

log = logging.getLogger(__name__)

ATTEMPTS: Final = 3
# Items planned and written at a time, all in the one transaction: progress can be told between
# slices, and a slice's statements are few enough that the slicing costs nothing measurable.
SLICE: Final = 2000


class Enrollments:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._bulk = Bulk(engine)

    def enroll(
        self, items: Seq[NewEnrollment], *, now: datetime, progress: Progress | None = None
    ) -> list[EnrollResult]:
        require_aware("now", now)
        if not items:
            return []
        for attempt in range(1, ATTEMPTS + 1):
            try:
                with self._engine.begin() as conn:
                    results, created, new = self._enroll_slices(conn, items, now, progress)
            except IntegrityError:
                # Another process created one of these subscribers or enrollments after our
                # reads (PostgreSQL; SQLite serializes writers): read again and redo the batch.
                if attempt == ATTEMPTS:
                    raise
                log.info("enroll batch raced with another writer; retrying (%d)", attempt)
                continue
            log.info("enrolled %d of %d (%d new subscribers)", created, len(items), new)
            return results
        raise AssertionError("unreachable")

    def _enroll_slices(
        self, conn: Connection, items: Seq[NewEnrollment], now: datetime,
        progress: Progress | None,
    ) -> tuple[list[EnrollResult], int, int]:
        """Plan and write slice after slice in the caller's transaction: a later slice reads what
        an earlier one wrote, so an address twice in `items` is refused as in one batch."""
        results: list[EnrollResult] = []
        created = new = 0
        for start in range(0, len(items), SLICE):
            batch = self._plan(conn, items[start : start + SLICE], now)
            self._write(conn, batch)
            results.extend(batch.results)
            created += batch.created
            new += len(batch.new_subscribers)
            if progress is not None:
                progress(min(start + SLICE, len(items)), len(items))
        return results, created, new

    def _plan(self, conn: Connection, items: Seq[NewEnrollment], now: datetime) -> EnrollmentBatch:
        emails = sorted({item.email for item in items})
        existing = self._existing(conn, emails)
        return plan_enrollments(
            items,
            existing=existing,
            suppressed=suppressed_hashes(
                self._bulk, conn, (address_hash(email) for email in emails)
            ),
            open_pairs=self._open_pairs(
                conn,
                sorted(row.id for row in existing.values()),
                sorted({item.sequence_key for item in items}),
            ),
            now=now,
        )

    def _existing(self, conn: Connection, emails: Seq[str]) -> dict[str, Any]:
        existing: dict[str, Any] = {}
        for chunk in self._bulk.batches(emails):
            for found in conn.execute(
                select(
                    Subscriber.id,
                    Subscriber.email,
                    Subscriber.status,
                    Subscriber.first_name,
                    Subscriber.hesitations,
                    Subscriber.confirmed_at,
                ).where(self._bulk.among(Subscriber.email, chunk))
            ):
                existing[found.email] = found
        return existing

    def _open_pairs(
        self, conn: Connection, subscriber_ids: Seq[uuid.UUID], sequences: Seq[str]
    ) -> set[tuple[uuid.UUID, str]]:
        open_pairs: set[tuple[uuid.UUID, str]] = set()
        for chunk in self._bulk.batches(subscriber_ids):
            open_pairs.update(
                (subscriber_id, sequence_key)
                for subscriber_id, sequence_key in conn.execute(
                    select(Enrollment.subscriber_id, Enrollment.sequence_key).where(
                        self._bulk.among(Enrollment.subscriber_id, chunk),
                        Enrollment.sequence_key.in_(sequences),
                        is_open(Enrollment.status),
                    )
                )
            )
        return open_pairs

    def _write(self, conn: Connection, batch: EnrollmentBatch) -> None:
        bulk = self._bulk
        bulk.insert(conn, subscriber_table, list(batch.new_subscribers.values()))
        bulk.update(conn, subscriber_table, "id", list(batch.updated_subscribers.values()))
        bulk.insert(conn, enrollment_table, batch.enrollments)
        bulk.insert(conn, consent_event_table, batch.consents)
        bulk.insert(conn, delivery_table, batch.deliveries)
