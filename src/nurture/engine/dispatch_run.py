"""One dispatch run's state: its clock, the batches it claimed, the messages with the relay, the
outcomes not yet recorded, and the report it adds up."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from uuid import UUID

from nurture.content.library import Content
from nurture.engine.decisions import Letterhead, MessageToSend
from nurture.engine.pacing import Pace
from nurture.engine.ports import ClaimedDelivery, DeliveryStatus, LiveState, Outcome
from nurture.engine.sending import PendingReply
from nurture.setting_values import DomainGroup


@dataclass
class DispatchReport:
    claimed: int = 0
    sent: int = 0
    skipped: int = 0
    held: int = 0
    deferred: int = 0
    failed: int = 0
    bounced: int = 0
    released: int = 0
    lease_lost: int = 0

    def add(self, other: DispatchReport) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def count(self, outcome: Outcome) -> None:
        if outcome.status is DeliveryStatus.QUEUED:
            self.held += 1
        else:
            name = outcome.status.value
            setattr(self, name, getattr(self, name) + 1)


@dataclass
class Batch:
    """The rows of one claim: the time and content they are handled with, and their report."""

    now: datetime
    """The claim's time: plans and retries count from it, so schedules do not drift by how long
    a run takes."""
    content: Content
    letterhead: Letterhead
    report: DispatchReport
    open: int
    """Rows without an outcome yet; once none is, the next record holds the last of them and
    the batch is logged."""


@dataclass(frozen=True)
class InFlight:
    message: MessageToSend
    batch: Batch
    handed_at: float
    reply: PendingReply
    group: DomainGroup


@dataclass(frozen=True)
class RunClock:
    """Times within a run: its `now` moved on by the monotonic clock."""

    start: datetime
    started: float
    monotonic: Callable[[], float]

    def at(self, moment: float) -> datetime:
        return self.start + timedelta(seconds=moment - self.started)

    def now(self) -> datetime:
        return self.at(self.monotonic())


@dataclass
class Run:
    """One run's progress: claimed rows not yet handed over, messages with the relay, outcomes not
    yet recorded, the batches not yet logged, and the last re-read of the rows' state."""

    clock: RunClock
    max_batches: int
    recheck_every: float
    """Seconds between re-reads of the pending rows' state (the policy's re-check interval)."""
    ahead: float
    """Seconds of the relay's time the messages waiting in the sender may hold."""
    pending: deque[tuple[ClaimedDelivery, Batch]] = field(default_factory=deque)
    in_flight: deque[InFlight] = field(default_factory=deque)
    unrecorded: list[Outcome] = field(default_factory=list)
    unmarked: list[Outcome] = field(default_factory=list)
    """Relay acceptances not yet marked on their rows (`DeliveryStore.mark_accepted`) nor
    recorded: with the messages in flight, what a crash now would send twice."""
    unmarked_since: float = 0.0
    batches: list[Batch] = field(default_factory=list)
    claims: int = 0
    more: bool = True
    """The last claim came back full: more rows may be due."""
    live: dict[UUID, LiveState] = field(default_factory=dict)
    checked_at: float | None = None
    """When `live` was read; None: the rows pending were claimed since, and are read again."""
    pace: Pace = field(default_factory=Pace)
    report: DispatchReport = field(default_factory=DispatchReport)
