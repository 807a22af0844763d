"""Pure scheduling: which step an enrollment gets next and when, inside its send window.

No clock, storage or I/O: every instant comes in as an argument and goes out as aware UTC.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock_time
from zoneinfo import ZoneInfo

from nurture.domain.model import Profile, SendWindow, Sequence, Step
from nurture.engine.ports import NextDelivery

__all__ = [
    "Plan",
    "Skip",
    "TimelineEntry",
    "in_window",
    "next_in_window",
    "plan_next",
    "timeline",
]

# A week plus today always holds a window day; the extra day covers a window lost in a DST gap.
_SEARCH_DAYS = 8


@dataclass(frozen=True)
class Skip:
    step_key: str
    reason: str


@dataclass(frozen=True)
class Plan:
    step: Step | None
    """None when nothing is left: the sequence is finished for this enrollment."""
    due_at: datetime | None
    """Aware UTC, already moved into the send window; None exactly when `step` is None."""
    skipped: tuple[Skip, ...] = ()
    """Steps passed over on the way, in sequence order (also when `step` is None)."""
    immediate: bool = False
    """The step is due at once after the person's own confirmation, outside the send window."""

    def __post_init__(self) -> None:
        if (self.step is None) != (self.due_at is None):
            raise ValueError("Plan needs both step and due_at, or neither")

    def as_next_delivery(self) -> NextDelivery | None:
        """The delivery to queue; None when finished (the caller still records `skipped`)."""
        if self.step is None or self.due_at is None:
            return None
        return NextDelivery(
            step_key=self.step.key,
            due_at=self.due_at,
            skipped=tuple((skip.step_key, skip.reason) for skip in self.skipped),
            immediate=self.immediate,
        )


@dataclass(frozen=True)
class TimelineEntry:
    step_key: str
    due_at_utc: datetime
    due_at_local: datetime
    skipped_reason: str | None
    """For a skipped step the due times are when its delay ran out, not moved into the window."""
    moved_by_window: bool
    immediate: bool = False
    """Due at once after confirming, outside the send window."""


def in_window(window: SendWindow, time_zone: str, at: datetime) -> bool:
    """Whether `at` falls on an allowed local weekday and local wall time in `time_zone`."""
    _check_window(window)
    return _inside(window, ZoneInfo(time_zone), _aware(at, "at"))


def next_in_window(window: SendWindow, time_zone: str, at: datetime) -> datetime:
    """`at` in UTC if it is inside the window, else the next instant the window opens, in UTC."""
    _check_window(window)
    zone = ZoneInfo(time_zone)
    at = _aware(at, "at")
    if _inside(window, zone, at):
        return at
    first_day = at.astimezone(zone).date()
    for offset in range(_SEARCH_DAYS + 1):
        day = first_day + timedelta(days=offset)
        if day.weekday() not in window.days:
            continue
        # Both occurrences of an ambiguous start: the second one is the next opening when `at`
        # falls between them (e.g. 01:50 EDT before a 01:00 start on the fall-back night).
        openings = [
            instant
            for instant in _local_instants(day, window.start, zone)
            if instant >= at and _inside(window, zone, instant)
        ]
        if openings:
            return min(openings)
    raise ValueError(f"no send window opening within {_SEARCH_DAYS} days of {at.isoformat()}")


def plan_next(
    sequence: Sequence,
    profile: Profile,
    *,
    done_step_keys: frozenset[str],
    anchor: datetime,
    at_confirmation: bool = False,
) -> Plan:
    """The next step for an enrollment whose last email went out (or which began) at `anchor`.

    `at_confirmation`: the enrollment begins now, at `anchor`, because the person confirmed their
    address. Its first step, when `immediate`, is then due at `anchor` itself, outside the window.
    """
    due = _aware(anchor, "anchor")
    skipped: list[Skip] = []
    for step in _remaining(sequence, done_step_keys):
        # A skipped step's delay still elapses, so later steps keep their place in the calendar.
        due += step.delay
        reason = _skip_reason(step, profile)
        if reason is not None:
            skipped.append(Skip(step.key, reason))
            continue
        if at_confirmation and step.immediate and not done_step_keys and step is sequence.steps[0]:
            return Plan(step=step, due_at=due, skipped=(), immediate=True)
        return Plan(
            step=step,
            due_at=next_in_window(sequence.window, profile.time_zone, due),
            skipped=tuple(skipped),
        )
    return Plan(step=None, due_at=None, skipped=tuple(skipped))


def timeline(sequence: Sequence, profile: Profile, *, start: datetime,
             at_confirmation: bool = False) -> list[TimelineEntry]:
    """Every step with its due time, as if each email went out exactly when due (for previews).

    `at_confirmation`: the person joins by confirming their address at `start` (an immediate first
    step goes at once); by default an operator or a CSV import enrolls them then."""
    zone = ZoneInfo(profile.time_zone)
    entries: list[TimelineEntry] = []
    done: set[str] = set()
    anchor = _aware(start, "start")
    while True:
        plan = plan_next(sequence, profile, done_step_keys=frozenset(done), anchor=anchor,
                         at_confirmation=at_confirmation and not done)
        # plan_next gives no per-skip times; rebuild each slot from the same delays it summed.
        slot = anchor
        for skip in plan.skipped:
            step = sequence.step(skip.step_key)
            assert step is not None
            slot += step.delay
            utc_slot = slot.astimezone(UTC)
            entries.append(
                TimelineEntry(
                    skip.step_key, utc_slot, utc_slot.astimezone(zone), skip.reason, False
                )
            )
            done.add(skip.step_key)
        if plan.step is None or plan.due_at is None:
            return entries
        slot += plan.step.delay
        entries.append(
            TimelineEntry(
                step_key=plan.step.key,
                due_at_utc=plan.due_at,
                due_at_local=plan.due_at.astimezone(zone),
                skipped_reason=None,
                moved_by_window=plan.due_at != slot,
                immediate=plan.immediate,
            )
        )
        done.add(plan.step.key)
        anchor = plan.due_at


def _remaining(sequence: Sequence, done_step_keys: frozenset[str]) -> Iterator[Step]:
    """Steps after the enrollment's position: the furthest done key still present in the sequence.

    Keys of removed steps are ignored, so a step inserted after the position is reached and one
    inserted before it is not.
    """
    position = max(
        (index for index, step in enumerate(sequence.steps) if step.key in done_step_keys),
        default=-1,
    )
    for step in sequence.steps[position + 1 :]:
        if step.key not in done_step_keys:
            yield step


def _skip_reason(step: Step, profile: Profile) -> str | None:
    if step.when is None or step.when.matches(profile):
        return None
    return "condition not met: " + step.when.describe()


def _check_window(window: SendWindow) -> None:
    if not window.days:
        raise ValueError("send window has no days, so no email could ever go out")
    if not window.days <= set(range(7)):
        raise ValueError(
            f"send window days must be 0 (Monday) to 6 (Sunday), got {sorted(window.days)}"
        )
    if window.start >= window.end:
        raise ValueError(
            f"send window start {window.start} must be before its end {window.end} "
            "(windows do not cross midnight)"
        )


def _aware(value: datetime, name: str) -> datetime:
    """`value` in UTC, because arithmetic on a ZoneInfo datetime goes by the wall clock.

    (`local + timedelta(days=1)` keeps the local time across a DST change, and two datetimes with
    the same ZoneInfo compare by wall time, ignoring `fold`.)
    """
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime, got naive {value.isoformat()}")
    return value.astimezone(UTC)


def _inside(window: SendWindow, zone: ZoneInfo, at: datetime) -> bool:
    local = at.astimezone(zone)
    return local.weekday() in window.days and window.start <= local.time() < window.end


def _local_instants(day: date, wall: clock_time, zone: ZoneInfo) -> list[datetime]:
    """The UTC instants at which the clocks in `zone` show `wall` on `day`, earliest first.

    Two for an ambiguous (fall-back) time; for a time skipped by a spring-forward gap, the first
    instant after the gap.
    """
    naive = datetime.combine(day, wall)
    first = naive.replace(tzinfo=zone, fold=0).astimezone(UTC)
    second = naive.replace(tzinfo=zone, fold=1).astimezone(UTC)
    if first.astimezone(zone).replace(tzinfo=None) == naive:
        return [first] if first == second else [first, second]
    # In a gap, fold=0 applies the offset from before the change and fold=1 the one after, so the
    # change itself lies between `second` and `first`; tz transitions fall on whole seconds.
    before_offset = second.astimezone(zone).utcoffset()
    low, high = int(second.timestamp()), int(first.timestamp())
    while high - low > 1:
        middle = (low + high) // 2
        if datetime.fromtimestamp(middle, zone).utcoffset() == before_offset:
            low = middle
        else:
            high = middle
    return [datetime.fromtimestamp(high, UTC)]
