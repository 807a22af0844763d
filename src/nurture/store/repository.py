"""SqlStore: the DeliveryStore and EnrollmentStore ports on SQLite and PostgreSQL, in bulk."""

from __future__ import annotations

import json
import logging
import uuid
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from collections.abc import Sequence as Seq
from datetime import datetime, timedelta
from typing import Any, Final, TypeVar

from sqlalchemy import (
    JSON,
    ColumnElement,
    Engine,
    Table,
    Text,
    any_,
    bindparam,
    cast,
    func,
    or_,
    select,
    text,
    true,
    type_coerce,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import QueryableAttribute
from sqlalchemy.sql import Executable

from nurture.engine.ports import (
    ClaimedDelivery,
    DeliveryKind,
    DeliveryStatus,
    EnrollmentSnapshot,
    EnrollmentStatus,
    EnrollResult,
    LiveState,
    NewEnrollment,
    Outcome,
    SubscriberSnapshot,
    SubscriberStatus,
)
from nurture.store.crypto import DataKeyError, EncryptedList, decrypt_list, decrypt_text
from nurture.store.enrollment_rows import plan_enrollments
from nurture.store.models import (
    CLAIMABLE_INDEX,
    CLAIMABLE_SQL,
    LEASED_INDEX,
    LEASED_SQL,
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
from nurture.store.outcome_rows import (
    HeldDelivery,
    bounced_subscribers,
    delivery_updates,
    enrollment_changes,
    exited_enrollments,
    next_delivery_rows,
    suppression_reasons,
    suppression_rows,
    wanted_next,
)
from nurture.store.rules import (
    DONE,
    OPEN_ENROLLMENT,
    SUPPRESSION_REASON_MAX,
    address_hash,
    outcomes_by_delivery,
    replaceable_by,
    require_aware,
)
from nurture.store.types import UTCDateTime
from nurture.store.views import DeliveryView, EnrollmentView

log = logging.getLogger(__name__)

T = TypeVar("T")
Row = Mapping[str, Any]

# SQLite binds one parameter per IN item; this keeps lists far below its limit. PostgreSQL gets
# one array parameter instead, whatever the length.
SQLITE_IN_CHUNK: Final = 1000


Column = ColumnElement[Any] | QueryableAttribute[Any]


def _expression(column: Column) -> ColumnElement[Any]:
    return column.expression if isinstance(column, QueryableAttribute) else column


def _is_open(status: Column) -> ColumnElement[bool]:
    # Spelled as ORs of equalities: an expanding IN cannot go into SQLite's executemany.
    return or_(*(status == value for value in OPEN_ENROLLMENT))


class SqlStore:
    """Deliveries, enrollments and suppressions in one SQL database.

    Every public method is one short transaction. On SQLite it starts with BEGIN IMMEDIATE (see
    `database.make_engine`), which serializes writers; on PostgreSQL claims use FOR UPDATE SKIP
    LOCKED, so several schedulers share the queue without waiting for each other. Many-row writes
    are one statement per table and batch: executemany on SQLite, unnest() arrays on PostgreSQL.
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._postgres = engine.dialect.name == "postgresql"

    @property
    def engine(self) -> Engine:
        return self._engine

    # -- DeliveryStore -------------------------------------------------------------------------

    def claim_due(
        self, *, now: datetime, owner: str, limit: int, lease: timedelta
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
            for chunk in self._batches(ids):
                conn.execute(
                    update(d)
                    .where(self._among(d.c.id, chunk))
                    .values(
                        status=DeliveryStatus.SENDING.value,
                        lease_owner=owner,
                        lease_expires_at=now + lease,
                    )
                )
            claimed = self._snapshots(conn, ids)
        log.debug("claimed %d deliveries for %s", len(claimed), owner)
        return claimed

    def _snapshots(self, conn: Connection, ids: Seq[uuid.UUID]) -> list[ClaimedDelivery]:
        rows: list[Any] = []
        for chunk in self._batches(ids):
            rows.extend(
                conn.execute(
                    select(
                        Delivery.id,
                        Delivery.kind,
                        Delivery.step_key,
                        Delivery.due_at,
                        Delivery.attempts,
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
                    .where(self._among(Delivery.id, chunk))
                )
            )
        done = self._done_step_keys(
            conn, sorted({row.enrollment_id for row in rows if row.enrollment_id is not None})
        )
        hashes = {row.id: address_hash(row.email) for row in rows}
        suppressed = self._suppressed_hashes(conn, hashes.values())

        claimed = []
        for row in rows:
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
            claimed.append(
                ClaimedDelivery(
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
                    suppressed=hashes[row.id] in suppressed,
                    unreadable=unreadable,
                )
            )
        claimed.sort(key=lambda item: (item.due_at, item.id))
        return claimed

    def _done_step_keys(
        self, conn: Connection, enrollment_ids: Seq[uuid.UUID]
    ) -> dict[uuid.UUID, set[str]]:
        done: dict[uuid.UUID, set[str]] = defaultdict(set)
        for chunk in self._batches(enrollment_ids):
            # Filtered on enrollment only, so the planner takes the (enrollment_id, step_key)
            # index; a status filter could tempt it into scanning every sent row ever.
            for enrollment_id, step_key, status in conn.execute(
                select(Delivery.enrollment_id, Delivery.step_key, Delivery.status).where(
                    self._among(Delivery.enrollment_id, chunk)
                )
            ):
                if status in DONE and enrollment_id is not None and step_key is not None:
                    done[enrollment_id].add(step_key)
        return done

    def _suppressed_hashes(self, conn: Connection, hashes: Iterable[str]) -> set[str]:
        found: set[str] = set()
        for chunk in self._batches(sorted(set(hashes))):
            found.update(
                conn.scalars(
                    select(Suppression.address_sha256).where(
                        self._among(Suppression.address_sha256, chunk)
                    )
                )
            )
        return found

    def record(self, outcomes: Seq[Outcome], *, owner: str) -> None:
        if not outcomes:
            return
        by_id = outcomes_by_delivery(outcomes)

        with self._engine.begin() as conn:
            held = self._held_rows(conn, sorted(by_id), owner)
            lost = [str(delivery_id) for delivery_id in by_id if delivery_id not in held]
            if lost:
                log.warning(
                    "%d outcome(s) not recorded: %s no longer holds the lease on deliveries %s",
                    len(lost),
                    owner,
                    ", ".join(lost),
                )
            if not held:
                return
            # Outcome order, not lock order: the first proposal of a next step wins.
            mine = [outcome for outcome in by_id.values() if outcome.delivery_id in held]
            wanted = wanted_next(mine, held)
            self._bulk_update(conn, delivery_table, "id", delivery_updates(mine, held))
            self._update_enrollments(conn, mine, held)
            self._apply_suppressions(conn, mine, held)
            self._queue_next(conn, wanted)

    def _held_rows(self, conn: Connection, ids: Seq[uuid.UUID], owner: str) -> dict[uuid.UUID, Any]:
        held: dict[uuid.UUID, Any] = {}
        for chunk in self._batches(ids):
            for row in conn.execute(
                select(
                    Delivery.id,
                    Delivery.subscriber_id,
                    Delivery.enrollment_id,
                    Delivery.step_key,
                    Delivery.due_at,
                    Delivery.attempts,
                    Delivery.message_id,
                    Delivery.smtp_code,
                    Delivery.last_error,
                    Delivery.skip_reason,
                    Delivery.content_version,
                    Delivery.sent_at,
                )
                .where(
                    self._among(Delivery.id, chunk),
                    Delivery.lease_owner == owner,
                    Delivery.status == DeliveryStatus.SENDING.value,
                )
                # Id order: two recorders never lock the same rows in opposite orders.
                .order_by(Delivery.id)
                .with_for_update()
            ):
                held[row.id] = row
        return held

    def _update_enrollments(
        self, conn: Connection, outcomes: Seq[Outcome], held: dict[uuid.UUID, Any]
    ) -> None:
        changes = enrollment_changes(outcomes, held)
        self._bulk_update(conn, enrollment_table, "id", changes.sent)
        # An enrollment already ended (unsubscribe, bounce) keeps its first reason.
        self._bulk_update(
            conn, enrollment_table, "id", changes.ends, _is_open(enrollment_table.c.status)
        )

    def _apply_suppressions(
        self, conn: Connection, outcomes: Seq[Outcome], held: dict[uuid.UUID, Any]
    ) -> None:
        reasons = suppression_reasons(outcomes, held)
        if not reasons:
            return
        emails: dict[uuid.UUID, str] = {}
        for chunk in self._batches(sorted(reasons)):
            emails.update(
                (subscriber_id, email)
                for subscriber_id, email in conn.execute(
                    select(Subscriber.id, Subscriber.email).where(self._among(Subscriber.id, chunk))
                )
            )
        suppressions = suppression_rows(reasons, emails)
        self._bulk_insert(conn, suppression_table, suppressions, conflict=["address_sha256"])
        self._bulk_update(
            conn,
            subscriber_table,
            "id",
            bounced_subscribers(reasons),
            # An erased subscriber stays erased: that status is a promise to the person.
            subscriber_table.c.status != SubscriberStatus.ERASED.value,
        )
        self._bulk_update(
            conn,
            enrollment_table,
            "subscriber_id",
            exited_enrollments(reasons),
            _is_open(enrollment_table.c.status),
        )
        log.info("suppressed %d address(es) after permanent failures", len(suppressions))

    def _queue_next(self, conn: Connection, wanted: Seq[tuple[Outcome, HeldDelivery]]) -> None:
        if not wanted:
            return
        open_ids = self._open_enrollments(
            conn, sorted({row.enrollment_id for _, row in wanted if row.enrollment_id})
        )
        # The unique (enrollment_id, step_key) key turns a second enqueue of a step into a no-op:
        # "already queued" is the right answer, so that conflict is not an error.
        self._bulk_insert(
            conn,
            delivery_table,
            next_delivery_rows(wanted, open_ids),
            conflict=["enrollment_id", "step_key"],
        )

    def _open_enrollments(self, conn: Connection, ids: Seq[uuid.UUID]) -> set[uuid.UUID]:
        found: set[uuid.UUID] = set()
        for chunk in self._batches(ids):
            found.update(
                conn.scalars(
                    select(Enrollment.id).where(
                        self._among(Enrollment.id, chunk), _is_open(Enrollment.status)
                    )
                )
            )
        return found

    def release(self, delivery_ids: Seq[uuid.UUID], *, owner: str) -> None:
        if not delivery_ids:
            return
        with self._engine.begin() as conn:
            for chunk in self._batches(list(delivery_ids)):
                conn.execute(
                    update(delivery_table)
                    .where(
                        self._among(delivery_table.c.id, chunk),
                        delivery_table.c.lease_owner == owner,
                        delivery_table.c.status == DeliveryStatus.SENDING.value,
                    )
                    .values(_unleased())
                )

    def release_all(self, owner: str) -> int:
        """Give back every lease `owner` holds (graceful shutdown); returns how many."""
        with self._engine.begin() as conn:
            result = conn.execute(
                update(delivery_table)
                .where(
                    delivery_table.c.lease_owner == owner,
                    delivery_table.c.status == DeliveryStatus.SENDING.value,
                )
                .values(_unleased())
            )
        count = result.rowcount
        if count:
            log.info("released %d leased deliveries of %s", count, owner)
        return count

    def reap_expired(self, now: datetime) -> int:
        """Return `sending` rows whose lease expired at `now` to the queue; returns how many.

        A crash between the SMTP reply and the record leaves such rows; they are sent again with
        the same Message-ID (at-least-once)."""
        require_aware("now", now)
        with self._engine.begin() as conn:
            result = conn.execute(
                update(delivery_table)
                .where(text(LEASED_SQL), delivery_table.c.lease_expires_at <= now)
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
        d = delivery_table
        with self._engine.begin() as conn:
            for chunk in self._batches(sorted(delivery_ids)):
                conn.execute(
                    update(d)
                    .where(
                        self._among(d.c.id, chunk),
                        d.c.lease_owner == owner,
                        d.c.status == DeliveryStatus.SENDING.value,
                    )
                    .values(lease_expires_at=now + lease)
                )
                rows.extend(
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
                            self._among(Delivery.id, chunk),
                            Delivery.lease_owner == owner,
                            Delivery.status == DeliveryStatus.SENDING.value,
                        )
                    )
                )
            suppressed = self._suppressed_hashes(conn, (address_hash(row.email) for row in rows))
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

    # -- Bounces and complaints ----------------------------------------------------------------

    def feedback_targets(
        self, *, emails: Seq[str], delivery_ids: Seq[uuid.UUID]
    ) -> tuple[dict[str, uuid.UUID], dict[uuid.UUID, uuid.UUID]]:
        """Subscriber ids by (normalized) address and by delivery id, for those that exist."""
        by_email: dict[str, uuid.UUID] = {}
        by_delivery: dict[uuid.UUID, uuid.UUID] = {}
        wanted = sorted({email.strip().lower() for email in emails})
        with self._engine.connect() as conn:
            for chunk in self._batches(wanted):
                by_email.update(
                    (email, subscriber_id)
                    for subscriber_id, email in conn.execute(
                        select(Subscriber.id, Subscriber.email).where(
                            self._among(Subscriber.email, chunk)
                        )
                    )
                )
            for id_chunk in self._batches(sorted(set(delivery_ids))):
                by_delivery.update(
                    (delivery_id, subscriber_id)
                    for delivery_id, subscriber_id in conn.execute(
                        select(Delivery.id, Delivery.subscriber_id).where(
                            self._among(Delivery.id, id_chunk)
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
        ids = sorted(reasons)
        with self._engine.begin() as conn:
            emails: dict[uuid.UUID, str] = {}
            for chunk in self._batches(ids):
                emails.update(
                    (subscriber_id, email)
                    for subscriber_id, email in conn.execute(
                        select(Subscriber.id, Subscriber.email).where(
                            self._among(Subscriber.id, chunk)
                        )
                    )
                )
            digests = {subscriber_id: address_hash(email) for subscriber_id, email in emails.items()}
            before = self._suppressed_hashes(conn, digests.values())
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
            self._bulk_insert(
                conn, suppression_table, list(fresh.values()), conflict=["address_sha256"]
            )
            found = sorted(emails)
            for chunk in self._batches(found):
                conn.execute(
                    update(subscriber_table)
                    .where(
                        self._among(subscriber_table.c.id, chunk),
                        or_(*(subscriber_table.c.status == value for value in replaceable)),
                    )
                    .values(status=status.value, updated_at=now)
                )
                conn.execute(
                    update(enrollment_table)
                    .where(
                        self._among(enrollment_table.c.subscriber_id, chunk),
                        _is_open(enrollment_table.c.status),
                    )
                    .values(
                        status=EnrollmentStatus.EXITED.value, ended_at=now, end_reason=status.value
                    )
                )
                conn.execute(
                    update(delivery_table)
                    .where(
                        self._among(delivery_table.c.subscriber_id, chunk),
                        text(CLAIMABLE_SQL),
                    )
                    .values(status=DeliveryStatus.SKIPPED.value, skip_reason=status.value)
                )
        log.info(
            "addresses suppressed after feedback",
            extra={"status": status.value, "subscribers": len(emails), "new": len(fresh)},
        )
        return len(fresh)

    # -- EnrollmentStore -----------------------------------------------------------------------

    def enroll(self, items: Seq[NewEnrollment], *, now: datetime) -> list[EnrollResult]:
        require_aware("now", now)
        if not items:
            return []
        attempts = 3
        for attempt in range(1, attempts + 1):
            try:
                with self._engine.begin() as conn:
                    return self._enroll(conn, items, now)
            except IntegrityError:
                # Another process created one of these subscribers or enrollments after our
                # reads (PostgreSQL; SQLite serializes writers): read again and redo the batch.
                if attempt == attempts:
                    raise
                log.info("enroll batch raced with another writer; retrying (%d)", attempt)
        raise AssertionError("unreachable")

    def _enroll(
        self, conn: Connection, items: Seq[NewEnrollment], now: datetime
    ) -> list[EnrollResult]:
        emails = sorted({item.email for item in items})
        existing: dict[str, Any] = {}
        for chunk in self._batches(emails):
            for found in conn.execute(
                select(
                    Subscriber.id,
                    Subscriber.email,
                    Subscriber.status,
                    Subscriber.first_name,
                    Subscriber.hesitations,
                    Subscriber.confirmed_at,
                ).where(self._among(Subscriber.email, chunk))
            ):
                existing[found.email] = found
        suppressed = self._suppressed_hashes(conn, (address_hash(email) for email in emails))
        open_pairs: set[tuple[uuid.UUID, str]] = set()
        sequences = sorted({item.sequence_key for item in items})
        for chunk in self._batches(sorted(row.id for row in existing.values())):
            open_pairs.update(
                (subscriber_id, sequence_key)
                for subscriber_id, sequence_key in conn.execute(
                    select(Enrollment.subscriber_id, Enrollment.sequence_key).where(
                        self._among(Enrollment.subscriber_id, chunk),
                        Enrollment.sequence_key.in_(sequences),
                        _is_open(Enrollment.status),
                    )
                )
            )

        batch = plan_enrollments(
            items, existing=existing, suppressed=suppressed, open_pairs=open_pairs, now=now
        )
        self._bulk_insert(conn, subscriber_table, list(batch.new_subscribers.values()))
        self._bulk_update(conn, subscriber_table, "id", list(batch.updated_subscribers.values()))
        self._bulk_insert(conn, enrollment_table, batch.enrollments)
        self._bulk_insert(conn, consent_event_table, batch.consents)
        self._bulk_insert(conn, delivery_table, batch.deliveries)
        log.info(
            "enrolled %d of %d (%d new subscribers)",
            batch.created,
            len(items),
            len(batch.new_subscribers),
        )
        return batch.results

    def _pick(self, condition: str, order: Column, now: datetime, limit: int) -> Executable:
        """Ids of up to `limit` rows matching `condition` with `order` <= now, in that order.

        An ordered scan of the partial index for `condition` that stops after `limit` rows, so a
        claim costs the same with a backlog of a million rows as with ten; an OR of both kinds of
        due rows, or the (status, due_at) index, would sort every due row on every tick."""
        index = {CLAIMABLE_SQL: CLAIMABLE_INDEX, LEASED_SQL: LEASED_INDEX}[condition]
        column = _expression(order)
        if self._postgres:
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

    # -- Bulk statements -----------------------------------------------------------------------

    def _batches(self, values: Seq[T]) -> Iterator[Seq[T]]:
        if self._postgres:
            if values:
                yield values
            return
        for start in range(0, len(values), SQLITE_IN_CHUNK):
            yield values[start : start + SQLITE_IN_CHUNK]

    def _among(self, column: Column, values: Seq[Any]) -> ColumnElement[bool]:
        """`column IN values`; on PostgreSQL `= ANY(array)`, one parameter however many values,
        which keeps the statement text (and its cached plan) the same for every batch size."""
        expression = _expression(column)
        if self._postgres:
            array = bindparam(None, list(values), type_=postgresql.ARRAY(expression.type))
            return expression == any_(array)
        return expression.in_(values)

    def _unnest(
        self, table: Table, rows: Seq[Row], names: Seq[str]
    ) -> dict[str, ColumnElement[Any]]:
        """PostgreSQL: the rows as a derived table `unnest(array, array, ...)`, one array per
        column, so a whole batch travels as a single statement with one parameter per column."""
        arrays = []
        for name in names:
            column_type = table.c[name].type
            if isinstance(column_type, EncryptedList):
                # A list value would read as a nested array: encrypt here and send text.
                arrays.append(
                    bindparam(
                        None,
                        [column_type.process_bind_param(row[name], self._engine.dialect)
                         for row in rows],
                        type_=postgresql.ARRAY(Text),
                    )
                )
            elif isinstance(column_type, JSON):
                # A list value would read as a nested array: pass JSON as text, cast it back.
                arrays.append(
                    bindparam(
                        None,
                        [None if row[name] is None else json.dumps(row[name]) for row in rows],
                        type_=postgresql.ARRAY(Text),
                    )
                )
            else:
                arrays.append(
                    bindparam(
                        None, [row[name] for row in rows], type_=postgresql.ARRAY(column_type)
                    )
                )
        derived = func.unnest(*arrays).table_valued(*names).render_derived()
        return {
            name: cast(derived.c[name], JSON)
            if isinstance(table.c[name].type, JSON)
            else derived.c[name]
            for name in names
        }

    def _bulk_insert(
        self,
        conn: Connection,
        table: Table,
        rows: Seq[Row],
        *,
        conflict: Seq[str] | None = None,
    ) -> None:
        """Insert rows that all have the same keys; with `conflict`, rows that would duplicate
        that unique key are left out instead of failing the transaction."""
        if not rows:
            return
        if self._postgres:
            names = list(rows[0])
            columns = self._unnest(table, rows, names)
            # WHERE true: without it, ON CONFLICT after a FROM item is ambiguous to PostgreSQL.
            source = select(*(columns[name] for name in names)).where(true())
            pg_stmt = postgresql.insert(table).from_select(names, source)
            if conflict:
                pg_stmt = pg_stmt.on_conflict_do_nothing(index_elements=list(conflict))
            conn.execute(pg_stmt)
            return
        sqlite_stmt = sqlite.insert(table)
        if conflict:
            sqlite_stmt = sqlite_stmt.on_conflict_do_nothing(index_elements=list(conflict))
        conn.execute(sqlite_stmt, list(rows))

    def _bulk_update(
        self,
        conn: Connection,
        table: Table,
        key: str,
        rows: Seq[Row],
        *conditions: ColumnElement[bool],
    ) -> None:
        """UPDATE table SET <the other keys of each row> WHERE table.<key> = row[key] AND
        conditions; every row has the same keys, and no two rows the same key value."""
        if not rows:
            return
        names = list(rows[0])
        if self._postgres:
            columns = self._unnest(table, rows, names)
            conn.execute(
                update(table)
                .values({name: columns[name] for name in names if name != key})
                .where(table.c[key] == columns[key], *conditions)
            )
            return
        conn.execute(
            update(table).where(table.c[key] == bindparam("b_key"), *conditions),
            [{"b_key": row[key], **{n: v for n, v in row.items() if n != key}} for row in rows],
        )

    # -- Inspection helpers for the CLI and tests ----------------------------------------------

    def counts_by_status(self) -> dict[str, int]:
        """Deliveries per status, with every status present (zero when none)."""
        counts = {status.value: 0 for status in DeliveryStatus}
        with self._engine.connect() as conn:
            for status, count in conn.execute(
                select(Delivery.status, func.count()).group_by(Delivery.status)
            ):
                counts[status] = count
        return counts

    def deliveries_for(self, email: str) -> list[DeliveryView]:
        """Every delivery of the subscriber with this (normalized) address, oldest first."""
        with self._engine.connect() as conn:
            rows = conn.execute(
                select(
                    Delivery.id,
                    Delivery.kind,
                    Enrollment.sequence_key,
                    Delivery.step_key,
                    Delivery.status,
                    Delivery.due_at,
                    Delivery.attempts,
                    Delivery.lease_owner,
                    Delivery.lease_expires_at,
                    Delivery.sent_at,
                    Delivery.message_id,
                    Delivery.smtp_code,
                    Delivery.last_error,
                    Delivery.skip_reason,
                    Delivery.content_version,
                )
                .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
                .outerjoin(Enrollment, Enrollment.id == Delivery.enrollment_id)
                .where(Subscriber.email == email)
                .order_by(Delivery.due_at, Delivery.created_at, Delivery.step_key)
            ).all()
        return [
            DeliveryView(
                id=row.id,
                kind=DeliveryKind(row.kind),
                sequence_key=row.sequence_key,
                step_key=row.step_key,
                status=DeliveryStatus(row.status),
                due_at=row.due_at,
                attempts=row.attempts,
                lease_owner=row.lease_owner,
                lease_expires_at=row.lease_expires_at,
                sent_at=row.sent_at,
                message_id=row.message_id,
                smtp_code=row.smtp_code,
                last_error=row.last_error,
                skip_reason=row.skip_reason,
                content_version=row.content_version,
            )
            for row in rows
        ]

    def enrollments_for(self, email: str) -> list[EnrollmentView]:
        """Every enrollment of the subscriber with this (normalized) address, oldest first."""
        with self._engine.connect() as conn:
            rows = conn.execute(
                select(
                    Enrollment.id,
                    Enrollment.sequence_key,
                    Enrollment.status,
                    Enrollment.last_step_key,
                    Enrollment.last_sent_at,
                    Enrollment.enrolled_at,
                    Enrollment.ended_at,
                    Enrollment.end_reason,
                )
                .join(Subscriber, Subscriber.id == Enrollment.subscriber_id)
                .where(Subscriber.email == email)
                .order_by(Enrollment.enrolled_at, Enrollment.sequence_key)
            ).all()
        return [
            EnrollmentView(
                id=row.id,
                sequence_key=row.sequence_key,
                status=EnrollmentStatus(row.status),
                last_step_key=row.last_step_key,
                last_sent_at=row.last_sent_at,
                enrolled_at=row.enrolled_at,
                ended_at=row.ended_at,
                end_reason=row.end_reason,
            )
            for row in rows
        ]

    def is_suppressed(self, email: str) -> bool:
        with self._engine.connect() as conn:
            return bool(self._suppressed_hashes(conn, [address_hash(email)]))


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


def _unleased() -> dict[str, Any]:
    return {
        "status": DeliveryStatus.QUEUED.value,
        "lease_owner": None,
        "lease_expires_at": None,
    }
