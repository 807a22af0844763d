"""Ending enrollments when a subscriber reports an event such as a booked consult (a conversion)."""

from __future__ import annotations

import uuid
from collections.abc import Collection
from datetime import datetime

from sqlalchemy import update
from sqlalchemy.engine import Engine

from nurture.engine.ports import DeliveryStatus, EnrollmentStatus
from nurture.store.models import delivery_table, enrollment_table

_OPEN = (EnrollmentStatus.ACTIVE.value, EnrollmentStatus.PAUSED.value)
_WAITING = (DeliveryStatus.QUEUED.value, DeliveryStatus.DEFERRED.value)


def end_enrollments(engine: Engine, subscriber_id: uuid.UUID, sequence_keys: Collection[str], *,
                    reason: str, now: datetime) -> int:
    """Complete the subscriber's open enrollments in these sequences; their queued emails are skipped.

    Returns how many enrollments ended (0 when the event was already recorded: repeating is harmless).
    """
    if not sequence_keys:
        return 0
    with engine.begin() as conn:
        ended = conn.execute(
            update(enrollment_table)
            .where(enrollment_table.c.subscriber_id == subscriber_id,
                   enrollment_table.c.sequence_key.in_(list(sequence_keys)),
                   enrollment_table.c.status.in_(_OPEN))
            .values(status=EnrollmentStatus.COMPLETED.value, ended_at=now, end_reason=reason,
                    paused_until=None)
            .returning(enrollment_table.c.id)
        ).scalars().all()
        if ended:
            conn.execute(
                update(delivery_table)
                .where(delivery_table.c.enrollment_id.in_(list(ended)),
                       delivery_table.c.status.in_(_WAITING))
                .values(status=DeliveryStatus.SKIPPED.value, skip_reason=reason,
                        lease_owner=None, lease_expires_at=None)
            )
    return len(ended)
