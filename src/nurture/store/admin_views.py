"""What the admin and operator pages read from the database, as plain values: step results between
two dates, the latest deliveries, and whether the database answers at all."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from sqlalchemy import select
from sqlalchemy.engine import Engine

from nurture.store.models import Delivery, Enrollment, Subscriber
from nurture.store.stats import StepStats, step_stats, step_stats_by_locale

Key = TypeVar("Key")


@dataclass(frozen=True)
class DeliveryRow:
    """One delivery as the deliveries page lists it. `email` is the full address: the page masks it."""

    email: str
    kind: str
    sequence: str
    step: str
    status: str
    due_at: datetime
    sent_at: datetime | None
    attempts: int
    smtp_code: int | None
    note: str
    """The last SMTP error, else why it was skipped, else empty."""


def step_stats_between(engine: Engine, *, sequence: str | None, since: datetime | None,
                       until: datetime | None, locale: str | None = None
                       ) -> dict[tuple[str, str], StepStats]:
    """step_stats for [since, until), of the subscribers in `locale` when given."""
    return _between(lambda start: step_stats(engine, sequence=sequence, since=start,
                                             locale=locale), since, until)


def step_stats_by_locale_between(engine: Engine, *, sequence: str | None,
                                 since: datetime | None, until: datetime | None
                                 ) -> dict[tuple[str, str, str], StepStats]:
    """step_stats_by_locale for [since, until): keyed by (locale, sequence, step)."""
    return _between(lambda start: step_stats_by_locale(engine, sequence=sequence, since=start),
                    since, until)


def _between(fetch: Callable[[datetime | None], dict[Key, StepStats]], since: datetime | None,
             until: datetime | None) -> dict[Key, StepStats]:
    """The stats fetched from `since`, less those from `until`. The queries filter only on a lower
    bound, so an upper bound is the difference of two runs; rows written between the two reads
    can make a count off by a few, clamped at zero."""
    result = fetch(since)
    if until is None:
        return result
    for key, later in fetch(until).items():
        row = result.get(key)
        if row is None:
            continue
        for column, count in later.counts.items():
            row.counts[column] = max(0, row.counts.get(column, 0) - count)
        row.unsubscribed_after = max(0, row.unsubscribed_after - later.unsubscribed_after)
        row.paused_after = max(0, row.paused_after - later.paused_after)
        row.converted_after = max(0, row.converted_after - later.converted_after)
    return result


def recent_deliveries(engine: Engine, *, status: str | None, limit: int) -> list[DeliveryRow]:
    """The latest deliveries by due time (queued ones for the future first)."""
    query = (
        select(Subscriber.email, Delivery.kind, Enrollment.sequence_key, Delivery.step_key,
               Delivery.status, Delivery.due_at, Delivery.sent_at, Delivery.attempts,
               Delivery.smtp_code, Delivery.last_error, Delivery.skip_reason)
        .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
        .outerjoin(Enrollment, Enrollment.id == Delivery.enrollment_id)
        .order_by(Delivery.due_at.desc(), Delivery.created_at.desc())
        .limit(limit)
    )
    if status is not None:
        query = query.where(Delivery.status == status)
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    return [
        DeliveryRow(
            email=row.email, kind=row.kind, sequence=row.sequence_key or "", step=row.step_key or "",
            status=row.status, due_at=row.due_at, sent_at=row.sent_at, attempts=row.attempts,
            smtp_code=row.smtp_code, note=row.last_error or row.skip_reason or "",
        )
        for row in rows
    ]

