"""What operators look at and what housekeeping does: heartbeats, queue health, data retention."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, func, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from nurture.engine.ports import DeliveryStatus, Progress, SubscriberStatus
from nurture.engine.replies import without_addresses
from nurture.store.models import (
    Delivery,
    SchedulerHeartbeat,
    Subscriber,
    Suppression,
    consent_event_table,
    delivery_table,
    scheduler_heartbeat_table,
    subscriber_table,
    suppression_table,
)
from nurture.store.rules import address_hash

_WAITING = (DeliveryStatus.QUEUED.value, DeliveryStatus.DEFERRED.value)
_LEFT = (SubscriberStatus.UNSUBSCRIBED.value, SubscriberStatus.BOUNCED.value,
         SubscriberStatus.COMPLAINED.value)
# Subscribers purged between two reports of progress.
PURGE_REPORT_EVERY = 500


def beat(engine: Engine, owner: str, *, now: datetime, sent: int, content_version: str | None,
         started_at: datetime, sending_state: str | None = None) -> None:
    with engine.begin() as conn:
        updated = conn.execute(
            update(scheduler_heartbeat_table)
            .where(scheduler_heartbeat_table.c.owner == owner)
            .values(last_tick_at=now, ticks=scheduler_heartbeat_table.c.ticks + 1,
                    sent=scheduler_heartbeat_table.c.sent + sent, content_version=content_version,
                    stopped_at=None, sending_state=sending_state)
        ).rowcount
        if not updated:
            conn.execute(scheduler_heartbeat_table.insert().values(
                owner=owner, started_at=started_at, last_tick_at=now, ticks=1, sent=sent,
                content_version=content_version, stopped_at=None, sending_state=sending_state))


def mark_stopped(engine: Engine, owner: str, now: datetime) -> None:
    with engine.begin() as conn:
        conn.execute(update(scheduler_heartbeat_table)
                     .where(scheduler_heartbeat_table.c.owner == owner).values(stopped_at=now))


@dataclass(frozen=True)
class QueueHealth:
    due: int
    """Waiting deliveries already due: what the schedulers have not caught up with."""
    waiting: int
    oldest_due_at: datetime | None
    by_status: dict[str, int]


def queue_health(engine: Engine, now: datetime) -> QueueHealth:
    with engine.connect() as conn:
        by_status = {status: int(count) for status, count in conn.execute(
            select(Delivery.status, func.count()).group_by(Delivery.status))}
        due, oldest = conn.execute(
            select(func.count(), func.min(Delivery.due_at))
            .where(Delivery.status.in_(_WAITING), Delivery.due_at <= now)).one()
    waiting = sum(by_status.get(s, 0) for s in _WAITING)
    return QueueHealth(due=int(due), waiting=waiting, oldest_due_at=oldest, by_status=by_status)


def relay_activity(engine: Engine, since: datetime) -> dict[str, dict[str, int]]:
    """By relay name, the deliveries it answered since `since` (by due time), by status."""
    found: dict[str, dict[str, int]] = {}
    with engine.connect() as conn:
        for relay, status, count in conn.execute(
                select(Delivery.relay, Delivery.status, func.count())
                .where(Delivery.relay.is_not(None), Delivery.due_at >= since)
                .group_by(Delivery.relay, Delivery.status)):
            found.setdefault(str(relay), {})[str(status)] = int(count)
    return found


def next_due_at(engine: Engine) -> datetime | None:
    """When the earliest waiting delivery falls due (it may already have): time travel's next stop."""
    with engine.connect() as conn:
        due: datetime | None = conn.execute(
            select(func.min(Delivery.due_at)).where(Delivery.status.in_(_WAITING))).scalar_one()
    return due


def heartbeats(engine: Engine) -> list[SchedulerHeartbeat]:
    with Session(engine, expire_on_commit=False) as session:
        return list(session.scalars(select(SchedulerHeartbeat).order_by(SchedulerHeartbeat.owner)))


def purge_departed(engine: Engine, *, older_than: datetime, now: datetime,
                   progress: Progress | None = None) -> int:
    """Strip personal data of people who left before `older_than`; keep their delivery history.

    The address stays only as its hash in the suppression list; the subscriber row keeps no
    address, name or answers; consent events lose IP and user agent; SMTP error texts that quote
    an address are cut. Returns how many subscribers were purged; `progress` hears (purged so
    far, all to purge) as it goes.
    """
    with engine.begin() as conn:
        rows = conn.execute(
            select(Subscriber.id, Subscriber.email, Subscriber.status)
            .where(Subscriber.status.in_(_LEFT), Subscriber.updated_at < older_than)
        ).all()
        if not rows:
            if progress is not None:
                progress(0, 0)
            return 0
        ids = [row.id for row in rows]
        known = set(conn.execute(select(Suppression.address_sha256).where(
            Suppression.address_sha256.in_([address_hash(r.email) for r in rows]))).scalars())
        new = [{"address_sha256": digest, "reason": f"retention after {status}", "at": now}
               for digest, status in {(address_hash(r.email), r.status) for r in rows}
               if digest not in known]
        if new:
            conn.execute(suppression_table.insert(), new)
        for done, row in enumerate(rows, start=1):
            conn.execute(update(subscriber_table).where(subscriber_table.c.id == row.id).values(
                email=f"erased-{row.id.hex}@invalid", first_name=None, hesitations=[],
                status=SubscriberStatus.ERASED.value, updated_at=now))
            if progress is not None and (done % PURGE_REPORT_EVERY == 0 or done == len(rows)):
                progress(done, len(rows))
        conn.execute(update(consent_event_table).where(consent_event_table.c.subscriber_id.in_(ids))
                     .values(ip=None, user_agent=None))
        for delivery_id, error in conn.execute(
                select(Delivery.id, Delivery.last_error).where(
                    Delivery.subscriber_id.in_(ids), Delivery.last_error.is_not(None))):
            conn.execute(update(delivery_table).where(delivery_table.c.id == delivery_id)
                         .values(last_error=without_addresses(error or "")))
        conn.execute(delete(delivery_table).where(delivery_table.c.subscriber_id.in_(ids),
                                                  delivery_table.c.status.in_(_WAITING)))
    return len(rows)
