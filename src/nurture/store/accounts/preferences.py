"""What a subscriber changes from their preferences page: unsubscribing, pausing and resuming,
their answers, discreet mode and locale."""

from __future__ import annotations

import logging
import uuid
from datetime import datetime
from typing import Any, Final

from sqlalchemy import Engine, select, update

from nurture.engine.ports import ConsentRecord, DeliveryStatus, EnrollmentStatus, SubscriberStatus
from nurture.store.accounts.statements import WAITING, add_consent
from nurture.store.models import (
    Enrollment,
    Subscriber,
    delivery_table,
    enrollment_table,
    subscriber_table,
)
from nurture.store.rules import OPEN_ENROLLMENT, require_aware

log = logging.getLogger(__name__)

END_REASON_UNSUBSCRIBED: Final = "unsubscribed"


class Preferences:
    """Each public method is one short transaction; none logs an address, a name or an answer."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def unsubscribe(
        self, subscriber_id: uuid.UUID, *, consent: ConsentRecord, now: datetime
    ) -> bool:
        """Stop everything for this subscriber now; False when there is no such subscriber.

        Open enrollments end with reason "unsubscribed" and waiting deliveries are skipped; the
        dispatcher also re-checks the status at send time for rows already leased."""
        require_aware("now", now)
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
                add_consent(conn, subscriber_id, consent, now)
        log.info("unsubscribe handled")
        return True

    def pause(
        self, subscriber_id: uuid.UUID, *, until: datetime, consent: ConsentRecord, now: datetime
    ) -> int:
        """Pause every open enrollment until `until`; returns how many."""
        require_aware("now", now)
        require_aware("until", until)
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
                add_consent(conn, subscriber_id, consent, now)
        return count

    def resume(self, subscriber_id: uuid.UUID, *, consent: ConsentRecord, now: datetime) -> int:
        """End the pause of every paused enrollment; returns how many.

        A waiting delivery due later than `now` keeps its time; one due earlier becomes due now."""
        require_aware("now", now)
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
            add_consent(conn, subscriber_id, consent, now)
        return len(paused)

    def update_answers(
        self, subscriber_id: uuid.UUID, hesitations: frozenset[str], *, now: datetime
    ) -> bool:
        """Replace the hesitations; later steps are chosen with the new answers."""
        return self._update(subscriber_id, now, hesitations=sorted(hesitations))

    def set_discreet(self, subscriber_id: uuid.UUID, discreet: bool, *, now: datetime) -> bool:
        return self._update(subscriber_id, now, discreet=discreet)

    def set_locale(self, subscriber_id: uuid.UUID, locale: str, *, now: datetime) -> bool:
        """The locale of the next emails (footer helplines, resources, the free call)."""
        return self._update(subscriber_id, now, locale=locale)

    def _update(self, subscriber_id: uuid.UUID, now: datetime, **values: Any) -> bool:
        require_aware("now", now)
        with self._engine.begin() as conn:
            count = conn.execute(
                update(subscriber_table)
                .where(subscriber_table.c.id == subscriber_id)
                .values(updated_at=now, **values)
            ).rowcount
        return bool(count)
