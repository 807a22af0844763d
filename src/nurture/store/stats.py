"""Per-step results of a sequence: deliveries by status and what people did after each step."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from nurture.engine.ports import DeliveryKind, EnrollmentStatus
from nurture.store.models import Delivery, Enrollment

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

    def as_dict(self) -> dict[str, object]:
        return {"sequence": self.sequence, "step": self.step, **self.counts,
                "unsubscribed_after": self.unsubscribed_after, "paused_after": self.paused_after,
                "converted_after": self.converted_after}


def step_stats(engine: Engine, *, sequence: str | None = None,
               since: datetime | None = None) -> dict[tuple[str, str], StepStats]:
    """Keyed by (sequence, step). Test sends never reach the delivery table, so they never count."""
    result: dict[tuple[str, str], StepStats] = {}

    def entry(seq: str, step: str) -> StepStats:
        key = (seq, step)
        if key not in result:
            result[key] = StepStats(seq, step)
        return result[key]

    deliveries = (
        select(Enrollment.sequence_key, Delivery.step_key, Delivery.status, func.count())
        .join(Enrollment, Enrollment.id == Delivery.enrollment_id)
        .where(Delivery.kind == DeliveryKind.STEP.value)
        .group_by(Enrollment.sequence_key, Delivery.step_key, Delivery.status)
    )
    after = (
        select(Enrollment.sequence_key, Enrollment.last_step_key, Enrollment.status,
               Enrollment.end_reason, func.count())
        .where(Enrollment.last_step_key.is_not(None))
        .group_by(Enrollment.sequence_key, Enrollment.last_step_key, Enrollment.status,
                  Enrollment.end_reason)
    )
    if sequence is not None:
        deliveries = deliveries.where(Enrollment.sequence_key == sequence)
        after = after.where(Enrollment.sequence_key == sequence)
    if since is not None:
        deliveries = deliveries.where(Delivery.created_at >= since)
        after = after.where(Enrollment.enrolled_at >= since)
    with engine.connect() as conn:
        for seq, step, status, count in conn.execute(deliveries):
            stats = entry(seq, step or "?")
            name = "queued" if status in ("queued", "sending", "deferred") else status
            stats.counts[name] = stats.counts.get(name, 0) + int(count)
        for seq, step, status, reason, count in conn.execute(after):
            stats = entry(seq, step or "?")
            if reason == "unsubscribed":
                stats.unsubscribed_after += int(count)
            if status == EnrollmentStatus.PAUSED.value:
                stats.paused_after += int(count)
            if reason in CONVERSION_REASONS:
                stats.converted_after += int(count)
    return result


def ordered(stats: dict[tuple[str, str], StepStats],
            order: dict[str, list[str]]) -> list[StepStats]:
    """Rows in each sequence's step order (steps no longer in the content go last)."""
    by_sequence: dict[str, list[StepStats]] = defaultdict(list)
    for row in stats.values():
        by_sequence[row.sequence].append(row)
    rows: list[StepStats] = []
    for seq in sorted(by_sequence):
        keys = order.get(seq, [])
        rows += sorted(by_sequence[seq],
                       key=lambda r: (keys.index(r.step) if r.step in keys else len(keys), r.step))
    return rows
