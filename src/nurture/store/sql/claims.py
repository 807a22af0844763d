"""Claiming due deliveries in SQL: the ordered pick of the queue head, the lease, and the snapshot
of each claimed delivery (subscriber, enrollment, done steps, suppression) the dispatcher decides on.
"""

from __future__ import annotations

import logging
import uuid
from collections import defaultdict
from collections.abc import Mapping
from collections.abc import Sequence as Seq
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, Text, bindparam, case, select, text, type_coerce, update
from sqlalchemy.engine import Connection
from sqlalchemy.sql import Executable

from nurture.engine.ports import (
    Assign,
    ClaimedDelivery,
    DeliveryKind,
    DeliveryStatus,
    EnrollmentSnapshot,
    EnrollmentStatus,
    SubscriberSnapshot,
    SubscriberStatus,
)
from nurture.store.assignments import assign_claims, recorded_assignment, to_offer
from nurture.store.crypto import DataKeyError, decrypt_list, decrypt_text
from nurture.store.models import (
    ASSIGNED_SQL,
    CLAIMABLE_INDEX,
    CLAIMABLE_SQL,
    LEASED_INDEX,
    LEASED_SQL,
    Delivery,
    Enrollment,
    Subscriber,
    delivery_table,
)
from nurture.store.rules import DONE, accepted_send, address_hash, require_aware
from nurture.store.sql.bulk import Bulk, Column, expression
from nurture.store.sql.suppressions import suppressed_hashes
from nurture.store.types import UTCDateTime

log = logging.getLogger(__name__)


class Claims:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._bulk = Bulk(engine)

    def claim_due(
        self, *, now: datetime, owner: str, limit: int, lease: timedelta,
        assign: Assign | None = None,
    ) -> list[ClaimedDelivery]:
        require_aware("now", now)
        if limit <= 0:
            return []
        d = delivery_table
        with self._engine.begin() as conn:
            # Expired leases (crash leftovers) first: they have waited longest.
            ids: list[uuid.UUID] = list(
                conn.scalars(self._pick(LEASED_SQL, d.c.lease_expires_at, now, limit))
            )
            if len(ids) < limit:
                ids.extend(
                    conn.scalars(self._pick(CLAIMABLE_SQL, d.c.due_at, now, limit - len(ids)))
                )
            if not ids:
                return []
            for chunk in self._bulk.batches(ids):
                conn.execute(
                    update(d)
                    .where(self._bulk.among(d.c.id, chunk))
                    .values(
                        status=DeliveryStatus.SENDING.value,
                        lease_owner=owner,
                        lease_expires_at=now + lease,
                        # A relay's acceptance counts only on a row that was still leased when
                        # its process died; on a queued row it is from another send.
                        accepted_at=case(
                            (d.c.status == DeliveryStatus.SENDING.value, d.c.accepted_at),
                            else_=None,
                        ),
                    )
                )
            claimed = self._snapshots(conn, ids)
            if assign is not None:
                claimed = self._assign(conn, claimed, assign)
        log.debug("claimed %d deliveries for %s", len(claimed), owner)
        return claimed

    def _assign(self, conn: Connection, claimed: list[ClaimedDelivery],
                assign: Assign) -> list[ClaimedDelivery]:
        """Record the arms `assign` chooses on the claimed rows, in the claim's transaction."""
        offered = to_offer(claimed, assign)
        earlier: dict[uuid.UUID, dict[str, str]] = defaultdict(dict)
        for chunk in self._bulk.batches(sorted({claim.subscriber.id for claim in offered})):
            # The literal condition lets SQLite use the partial index of assigned rows.
            for subscriber_id, experiment_key, variant in conn.execute(
                select(Delivery.subscriber_id, Delivery.experiment_key, Delivery.variant)
                .where(text(ASSIGNED_SQL), self._bulk.among(Delivery.subscriber_id, chunk))
            ):
                if experiment_key is not None and variant is not None:
                    earlier[subscriber_id][experiment_key] = variant
        claimed, rows = assign_claims(claimed, offered, earlier, assign)
        self._bulk.update(conn, delivery_table, "id", rows)
        return claimed

    def _pick(self, condition: str, order: Column, now: datetime, limit: int) -> Executable:
        """Ids of up to `limit` rows matching `condition` with `order` <= now, in that order.

        An ordered scan of the partial index for `condition` that stops after `limit` rows, so a
        claim costs the same with a backlog of a million rows as with ten; an OR of both kinds of
        due rows, or the (status, due_at) index, would sort every due row on every tick."""
        index = {CLAIMABLE_SQL: CLAIMABLE_INDEX, LEASED_SQL: LEASED_INDEX}[condition]
        column = expression(order)
        if self._bulk.postgres:
            return (
                select(delivery_table.c.id)
                .where(text(condition), column <= now)
                .order_by(column)
                .limit(limit)
                .with_for_update(skip_locked=True)
            )
        # Without statistics SQLite prefers (status, due_at) and sorts; INDEXED BY pins the
        # partial index, and fails loudly should its condition ever drift from this query's.
        return (
            text(
                f"SELECT id FROM delivery INDEXED BY {index} "
                f"WHERE {condition} AND {column.key} <= :now ORDER BY {column.key} LIMIT :limit"
            )
            .bindparams(bindparam("now", now, type_=UTCDateTime), bindparam("limit", limit))
            .columns(delivery_table.c.id)
        )

    def _snapshots(self, conn: Connection, ids: Seq[uuid.UUID]) -> list[ClaimedDelivery]:
        rows = self._claimed_rows(conn, ids)
        done = self._done_step_keys(
            conn, sorted({row.enrollment_id for row in rows if row.enrollment_id is not None})
        )
        hashes = {row.id: address_hash(row.email) for row in rows}
        suppressed = suppressed_hashes(self._bulk, conn, hashes.values())
        claimed = [_claimed(row, done, hashes[row.id] in suppressed) for row in rows]
        claimed.sort(key=lambda item: (item.due_at, item.id))
        return claimed

    def _claimed_rows(self, conn: Connection, ids: Seq[uuid.UUID]) -> list[Any]:
        rows: list[Any] = []
        for chunk in self._bulk.batches(ids):
            rows.extend(
                conn.execute(
                    select(
                        Delivery.id,
                        Delivery.kind,
                        Delivery.step_key,
                        Delivery.due_at,
                        Delivery.attempts,
                        Delivery.immediate,
                        Delivery.experiment_key,
                        Delivery.variant,
                        Delivery.assigned_by,
                        Delivery.accepted_at,
                        Delivery.smtp_code,
                        Delivery.relay,
                        Delivery.content_version,
                        Subscriber.id.label("subscriber_id"),
                        Subscriber.email,
                        # Read as stored and decrypted row by row below: one value written
                        # with a key no longer configured must not stop the whole claim.
                        type_coerce(Subscriber.first_name, Text).label("first_name"),
                        Subscriber.status.label("subscriber_status"),
                        Subscriber.time_zone,
                        type_coerce(Subscriber.hesitations, Text).label("hesitations"),
                        Subscriber.discreet,
                        Subscriber.locale,
                        Enrollment.id.label("enrollment_id"),
                        Enrollment.sequence_key,
                        Enrollment.status.label("enrollment_status"),
                        Enrollment.paused_until,
                        Enrollment.enrolled_at,
                        Enrollment.last_sent_at,
                    )
                    .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
                    .outerjoin(Enrollment, Enrollment.id == Delivery.enrollment_id)
                    .where(self._bulk.among(Delivery.id, chunk))
                )
            )
        return rows

    def _done_step_keys(
        self, conn: Connection, enrollment_ids: Seq[uuid.UUID]
    ) -> dict[uuid.UUID, set[str]]:
        done: dict[uuid.UUID, set[str]] = defaultdict(set)
        for chunk in self._bulk.batches(enrollment_ids):
            # Filtered on enrollment only, so the planner takes the (enrollment_id, step_key)
            # index; a status filter could tempt it into scanning every sent row ever.
            for enrollment_id, step_key, status in conn.execute(
                select(Delivery.enrollment_id, Delivery.step_key, Delivery.status).where(
                    self._bulk.among(Delivery.enrollment_id, chunk)
                )
            ):
                if status in DONE and enrollment_id is not None and step_key is not None:
                    done[enrollment_id].add(step_key)
        return done


def _claimed(row: Any, done: Mapping[uuid.UUID, set[str]], suppressed: bool) -> ClaimedDelivery:
    first_name, hesitations, unreadable = _decrypted_personal(row)
    enrollment = None
    if row.enrollment_id is not None:
        enrollment = EnrollmentSnapshot(
            id=row.enrollment_id,
            sequence_key=row.sequence_key,
            status=EnrollmentStatus(row.enrollment_status),
            paused_until=row.paused_until,
            enrolled_at=row.enrolled_at,
            done_step_keys=frozenset(done.get(row.enrollment_id, ())),
            last_sent_at=row.last_sent_at,
        )
    return ClaimedDelivery(
        id=row.id,
        kind=DeliveryKind(row.kind),
        step_key=row.step_key,
        due_at=row.due_at,
        attempts=row.attempts,
        subscriber=SubscriberSnapshot(
            id=row.subscriber_id,
            email=row.email,
            first_name=first_name,
            status=SubscriberStatus(row.subscriber_status),
            time_zone=row.time_zone,
            hesitations=frozenset(hesitations),
            discreet=row.discreet,
            locale=row.locale,
        ),
        enrollment=enrollment,
        suppressed=suppressed,
        unreadable=unreadable,
        immediate=row.immediate,
        assignment=recorded_assignment(row.experiment_key, row.variant, row.assigned_by),
        accepted=accepted_send(row.accepted_at, row.smtp_code, row.relay, row.content_version),
    )


def _decrypted_personal(row: Any) -> tuple[str | None, list[str], str | None]:
    """(first name, hesitations, None), or (None, [], why) when they cannot be decrypted."""
    try:
        return decrypt_text(row.first_name), decrypt_list(row.hesitations) or [], None
    except (DataKeyError, ValueError) as error:
        # No address or value in the log: the delivery id is enough to find the row.
        log.error("cannot decrypt a subscriber's stored answers",
                  extra={"delivery": str(row.id), "error_type": type(error).__name__})
        reason = str(error) if isinstance(error, DataKeyError) else "stored answers are corrupt"
        return None, [], reason
