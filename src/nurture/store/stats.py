"""Per-step results of a sequence: deliveries by status and what people did after each step,
overall or by the subscribers' locale."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, literal, select
from sqlalchemy.engine import Engine

from nurture.engine.ports import DeliveryKind, EnrollmentStatus
from nurture.store.models import Delivery, Enrollment, Subscriber

DELIVERY_COLUMNS = ("queued", "sent", "failed", "bounced", "skipped")
CONVERSION_REASONS = ("consult_booked",)


@dataclass
class StepStats:
    sequence: str
    step: str
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(DELIVERY_COLUMNS, 0))
    unsubscribed_after: int = 0
    paused_after: int = 0
    converted_after: int = 0
    locale: str | None = None
    """The subscribers' locale, when the results are broken down by locale."""

    def as_dict(self) -> dict[str, object]:
        where = {} if self.locale is None else {"locale": self.locale}
        return {"sequence": self.sequence, "step": self.step, **where, **self.counts,
                "unsubscribed_after": self.unsubscribed_after, "paused_after": self.paused_after,
                "converted_after": self.converted_after}


def step_stats(engine: Engine, *, sequence: str | None = None, since: datetime | None = None,
               locale: str | None = None) -> dict[tuple[str, str], StepStats]:
    """Keyed by (sequence, step); only subscribers in `locale` when given. Test sends never reach
    the delivery table, so they never count."""
    rows = _stats(engine, sequence=sequence, since=since, locale=locale, by_locale=False)
    return {(row.sequence, row.step): row for row in rows.values()}


def step_stats_by_locale(engine: Engine, *, sequence: str | None = None,
                         since: datetime | None = None) -> dict[tuple[str, str, str], StepStats]:
    """Keyed by (locale, sequence, step): step_stats for the subscribers of each locale."""
    return _stats(engine, sequence=sequence, since=since, locale=None, by_locale=True)


def _queries(*, by_locale: bool, locale: str | None) -> tuple[Any, Any]:
    """The deliveries by status and the enrollments by where they stopped, each row led by the
    subscriber's locale (or "" when not broken down)."""
    locale_column = Subscriber.locale if by_locale else literal("")
    deliveries = (
        select(locale_column, Enrollment.sequence_key, Delivery.step_key, Delivery.status,
               func.count())
        .join(Enrollment, Enrollment.id == Delivery.enrollment_id)
        .where(Delivery.kind == DeliveryKind.STEP.value)
        .group_by(Enrollment.sequence_key, Delivery.step_key, Delivery.status)
    )
    after = (
        select(locale_column, Enrollment.sequence_key, Enrollment.last_step_key,
               Enrollment.status, Enrollment.end_reason, func.count())
        .where(Enrollment.last_step_key.is_not(None))
        .group_by(Enrollment.sequence_key, Enrollment.last_step_key, Enrollment.status,
                  Enrollment.end_reason)
    )
    if by_locale or locale is not None:
        deliveries = deliveries.join(Subscriber, Subscriber.id == Enrollment.subscriber_id)
        after = after.join(Subscriber, Subscriber.id == Enrollment.subscriber_id)
    if by_locale:
        deliveries = deliveries.group_by(Subscriber.locale)
        after = after.group_by(Subscriber.locale)
    if locale is not None:
        deliveries = deliveries.where(Subscriber.locale == locale)
        after = after.where(Subscriber.locale == locale)
    return deliveries, after


def _stats(engine: Engine, *, sequence: str | None, since: datetime | None, locale: str | None,
           by_locale: bool) -> dict[tuple[str, str, str], StepStats]:
    result: dict[tuple[str, str, str], StepStats] = {}

    def entry(where: str, seq: str, step: str) -> StepStats:
        key = (where, seq, step)
        if key not in result:
            result[key] = StepStats(seq, step, locale=where if by_locale else None)
        return result[key]

    deliveries, after = _queries(by_locale=by_locale, locale=locale)
    if sequence is not None:
        deliveries = deliveries.where(Enrollment.sequence_key == sequence)
        after = after.where(Enrollment.sequence_key == sequence)
    if since is not None:
        deliveries = deliveries.where(Delivery.created_at >= since)
        after = after.where(Enrollment.enrolled_at >= since)
    with engine.connect() as conn:
        for where, seq, step, status, count in conn.execute(deliveries):
            stats = entry(where, seq, step or "?")
            name = "queued" if status in ("queued", "sending", "deferred") else status
            stats.counts[name] = stats.counts.get(name, 0) + int(count)
        for where, seq, step, status, reason, count in conn.execute(after):
            stats = entry(where, seq, step or "?")
            if reason == "unsubscribed":
                stats.unsubscribed_after += int(count)
            if status == EnrollmentStatus.PAUSED.value:
                stats.paused_after += int(count)
            if reason in CONVERSION_REASONS:
                stats.converted_after += int(count)
    return result


def ordered(stats: Mapping[Any, StepStats], order: dict[str, list[str]]) -> list[StepStats]:
    """Rows in each sequence's step order (steps no longer in the content go last), by locale
    within a step when broken down by locale."""
    by_sequence: dict[str, list[StepStats]] = defaultdict(list)
    for row in stats.values():
        by_sequence[row.sequence].append(row)
    rows: list[StepStats] = []
    for seq in sorted(by_sequence):
        keys = order.get(seq, [])
        rows += sorted(by_sequence[seq],
                       key=lambda r: (keys.index(r.step) if r.step in keys else len(keys), r.step,
                                      r.locale or ""))
    return rows
