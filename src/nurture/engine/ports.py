"""The interfaces the engine owns: what the dispatcher, enrollment and feedback need of storage,
and what the dispatcher needs of a mail transport.

The store package implements the store ports with SQLAlchemy; `smtp.transports` implements
`Transport`. Only plain data crosses these ports, so the core never sees a session, a row or a socket.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from collections.abc import Sequence as Seq
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import NamedTuple, Protocol, runtime_checkable
from uuid import UUID

from nurture.rendering.wire import MessageParts

Progress = Callable[[int, int], None]
"""How long work tells whoever watches how far it has come: (done so far, total), both in the work's
own units (rows, people, messages). The command line draws it; the core never imports a drawing
library, and a caller that watches nothing passes `None`."""


class DeliveryKind(StrEnum):
    STEP = "step"
    CONFIRMATION = "confirmation"
    TEST = "test"


class DeliveryStatus(StrEnum):
    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    DEFERRED = "deferred"
    FAILED = "failed"
    BOUNCED = "bounced"
    SKIPPED = "skipped"


class SubscriberStatus(StrEnum):
    PENDING = "pending"
    ACTIVE = "active"
    UNSUBSCRIBED = "unsubscribed"
    BOUNCED = "bounced"
    COMPLAINED = "complained"
    ERASED = "erased"


class EnrollmentStatus(StrEnum):
    ACTIVE = "active"
    PAUSED = "paused"
    COMPLETED = "completed"
    EXITED = "exited"


@dataclass(frozen=True)
class SubscriberSnapshot:
    id: UUID
    email: str
    first_name: str | None
    status: SubscriberStatus
    time_zone: str
    hesitations: frozenset[str]
    discreet: bool
    locale: str


@dataclass(frozen=True)
class EnrollmentSnapshot:
    id: UUID
    sequence_key: str
    status: EnrollmentStatus
    paused_until: datetime | None
    enrolled_at: datetime
    done_step_keys: frozenset[str]
    """Steps of this enrollment already sent or skipped (any delivery row not queued/sending/deferred)."""
    last_sent_at: datetime | None


class AssignedBy(StrEnum):
    CHANCE = "chance"
    """Drawn from the weights (and the holdout): the only assignments an experiment is judged on."""
    WINNER = "winner"
    """The winner, decided or pinned, given to someone not yet assigned."""
    EARLIER = "earlier"
    """The arm this person had in the same experiment before (an earlier enrollment)."""


@dataclass(frozen=True)
class Assignment:
    """Which arm of an experiment one delivery is: a variant key, or the holdout."""

    experiment_key: str
    arm: str
    by: AssignedBy = AssignedBy.CHANCE


class Assign(Protocol):
    """Chooses experiment arms for claimed deliveries. The store calls it inside the claim, so an
    arm is written before the row can be sent."""

    def tests(self, claim: ClaimedDelivery) -> bool:
        """Whether the claim's step is under an experiment now: only those claims are offered,
        and only their subscribers' earlier arms are read."""
        ...

    def __call__(self, claims: Seq[ClaimedDelivery]) -> Mapping[UUID, Assignment]:
        """The arms to record, by delivery id, for claims offered with their earlier arms."""
        ...


@dataclass(frozen=True)
class AcceptedSend:
    """A relay's acceptance written on a leased row ahead of its full record (`mark_accepted`):
    a process that claims the row after a crash records it as sent instead of sending it again."""

    at: datetime
    smtp_code: int | None
    relay: str | None
    content_version: str | None


@dataclass(frozen=True)
class ClaimedDelivery:
    """A delivery this process holds a lease on, with everything needed to decide and render it."""

    id: UUID
    kind: DeliveryKind
    step_key: str | None
    due_at: datetime
    attempts: int
    subscriber: SubscriberSnapshot
    enrollment: EnrollmentSnapshot | None
    suppressed: bool
    unreadable: str | None = None
    """Why the subscriber's encrypted fields could not be read (a data key missing from
    NURTURE_DATA_KEYS); such a delivery is retried later, never sent without them."""
    immediate: bool = False
    """The first step, due at once after the person's own confirmation: the send window does not
    hold it (nor its retries soon after)."""
    assignment: Assignment | None = None
    """The experiment arm recorded on this delivery when it was first claimed."""
    earlier_arms: Mapping[str, str] = field(default_factory=dict)
    """Experiment key to the arm this subscriber was given on other deliveries, read only when
    the claim assigns: a person never gets two variants of one experiment."""
    accepted: AcceptedSend | None = None
    """Set when a relay already took this message under an earlier lease that ran out before
    its outcome was recorded (the process died): it is recorded as sent, never sent again."""


@dataclass(frozen=True)
class LiveState:
    """A leased delivery's consent and enrollment state as it is now, read just before sending:
    an unsubscribe, pause, bounce or complaint may have landed since the claim."""

    subscriber_status: SubscriberStatus
    suppressed: bool
    enrollment_status: EnrollmentStatus | None
    paused_until: datetime | None


@dataclass(frozen=True)
class NextDelivery:
    """The step the planner chose to queue after an outcome, on the same enrollment."""

    step_key: str
    due_at: datetime
    skipped: tuple[tuple[str, str], ...] = ()
    """(step key, reason) of steps passed over on the way; recorded as `skipped` rows."""
    immediate: bool = False
    """Due at once after the person's own confirmation: sent outside the send window."""


@dataclass(frozen=True)
class Outcome:
    """What happened to one claimed delivery; the store applies it in one transaction per batch.

    status: the delivery's new status. QUEUED with `due_at` means "held back" (pause, send window);
    DEFERRED with `due_at` means "retry later" after a temporary failure.
    next_delivery: queue this step for the enrollment (only with SENT or SKIPPED).
    end_enrollment: set the enrollment to this status with `end_reason` (COMPLETED or EXITED).
    suppress_reason: add the subscriber's address to the suppression list and mark them bounced.
    """

    delivery_id: UUID
    status: DeliveryStatus
    at: datetime
    due_at: datetime | None = None
    smtp_code: int | None = None
    error: str | None = None
    message_id: str | None = None
    content_version: str | None = None
    count_attempt: bool = False
    next_delivery: NextDelivery | None = None
    end_enrollment: EnrollmentStatus | None = None
    end_reason: str | None = None
    suppress_reason: str | None = None
    relay: str | None = None
    """The relay that answered (accepted the message, or refused it)."""


class DeliveryStore(Protocol):
    def claim_due(
        self, *, now: datetime, owner: str, limit: int, lease: timedelta,
        assign: Assign | None = None,
    ) -> list[ClaimedDelivery]:
        """Lease up to `limit` deliveries that are due at `now` (queued or deferred with due_at <= now,
        or sending with an expired lease), oldest due first; no two owners ever hold the same row.

        With `assign`, the claimed rows without an assignment (and with their subscriber's earlier
        arms) are offered to it, and what it returns is recorded on the rows in the same
        transaction and carried by the claims returned."""
        ...

    def record(self, outcomes: Seq[Outcome], *, owner: str) -> None:
        """Apply outcomes of deliveries leased by `owner` in one transaction."""
        ...

    def mark_accepted(self, outcomes: Seq[Outcome], *, owner: str) -> None:
        """Write on the rows `owner` still holds that a relay accepted their message (the SENT
        outcomes' time, code, relay and content version), one cheap statement, the rows staying
        leased until `record`; a claim after the lease brings them back with `accepted` set."""
        ...

    def release(self, delivery_ids: Seq[UUID], *, owner: str) -> None:
        """Give back leased deliveries untouched (status queued, lease cleared)."""
        ...

    def release_all(self, owner: str) -> int:
        """Give back everything `owner` still holds (graceful shutdown); returns the count."""
        ...

    def reap_expired(self, now: datetime) -> int:
        """Return `sending` rows whose lease expired (their process died) to the queue."""
        ...

    def hold_destination(self, domains: Seq[str], *, until: datetime, reason: str) -> int:
        """Move the waiting (queued or deferred) deliveries to addresses at `domains` that fall
        due before `until` to `until`, with `reason` as their last error, unattempted: a
        destination that asked us to slow down is not claimed again until then. Returns how many
        moved."""
        ...

    def recheck(
        self, delivery_ids: Seq[UUID], *, owner: str, now: datetime, lease: timedelta
    ) -> dict[UUID, LiveState]:
        """Renew `owner`'s lease on these deliveries to `now + lease` and return their current
        state, in one short transaction; an id missing from the answer is no longer leased by
        `owner` and must not be sent."""
        ...


@dataclass(frozen=True)
class ConsentRecord:
    """Where a subscriber's consent came from: a form submission, an operator, a CSV file."""

    kind: str  # signup, confirm, import, operator, unsubscribe, pause, resubscribe, erase
    source: str  # "web-form v1", "csv:contacts.csv", "cli"
    ip: str | None = None
    user_agent: str | None = None
    consent_text_sha256: str | None = None


@dataclass(frozen=True)
class NewEnrollment:
    """An active subscriber to create or update and enroll, with their first planned delivery."""

    email: str  # already normalized
    first_name: str | None
    time_zone: str
    hesitations: frozenset[str]
    discreet: bool
    locale: str
    sequence_key: str
    content_version: str
    first_delivery: NextDelivery | None
    consent: ConsentRecord


@dataclass(frozen=True)
class EnrollResult:
    email: str
    subscriber_id: UUID
    enrollment_id: UUID | None
    created: bool
    """False when the subscriber already had an active or paused enrollment in that sequence."""
    reason: str = ""


class EnrollmentStore(Protocol):
    def enroll(self, items: Seq[NewEnrollment], *, now: datetime,
               progress: Progress | None = None) -> list[EnrollResult]:
        """Create or update subscribers (status active) and enroll them; an address that is
        suppressed or already enrolled in the sequence is not enrolled again (created=False, reason).
        Many items go in one transaction with bulk statements (10,000 in a few seconds);
        `progress` hears how many items are written, a slice at a time."""
        ...


class FeedbackStore(Protocol):
    def feedback_targets(
        self, *, emails: Seq[str], delivery_ids: Seq[UUID]
    ) -> tuple[dict[str, UUID], dict[UUID, UUID]]:
        """Subscriber ids by (normalized) address and by delivery id, for those that exist."""
        ...

    def suppress_subscribers(
        self, reasons: Mapping[UUID, str], *, status: SubscriberStatus, now: datetime
    ) -> int:
        """Suppress these subscribers' addresses (reason per subscriber), set their status
        (BOUNCED or COMPLAINED), end their open enrollments and skip their waiting deliveries;
        returns how many addresses were not suppressed before. Idempotent."""
        ...


class SendErrorKind(StrEnum):
    TEMPORARY = "temporary"  # 4xx: try again later
    PERMANENT = "permanent"  # 5xx for this recipient: hard bounce
    CONNECTION = "connection"  # refused, dropped, timed out: nothing was decided
    LIMITED = "limited"  # no relay may take it yet (a relay's hourly or daily limit): not tried


@dataclass(frozen=True)
class SendResult:
    ok: bool
    code: int | None = None
    message: str = ""
    error_kind: SendErrorKind | None = None
    relay: str | None = None
    """The name of the relay that gave this answer, where several are configured."""
    retry_in: float | None = None
    """LIMITED: seconds until a relay may take it."""


@dataclass(frozen=True)
class OutgoingMessage:
    envelope_from: str
    recipients: tuple[str, ...]
    data: bytes
    """The message as sent; empty when `parts` holds it."""
    message_id: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    at: datetime | None = None
    """The instant it is sent as of, on the run's clock (its Date): a relay's daily cap counts
    the sends of this UTC day. None: now."""
    parts: MessageParts | None = None
    """The message with its bodies still to encode: the transport assembles it (the relay
    process, on the other core, while the dispatcher renders the next)."""

    def wire(self) -> bytes:
        return self.data if self.parts is None else self.parts.wire()


class Transport(Protocol):
    def send(self, message: OutgoingMessage) -> SendResult:
        """Send one message over a persistent connection, opening it when needed. A connection
        failure returns CONNECTION and leaves the transport ready to reconnect; never raises for SMTP
        replies."""
        ...

    def close(self) -> None: ...


class Answer(NamedTuple):
    """A pipelined transport's outcome for one message, and how long ago the relay gave it."""

    result: SendResult
    age: float
    """Seconds from the relay's reply to the moment the outcome was read."""


@runtime_checkable
class PipelinedTransport(Transport, Protocol):
    """A transport that takes the next message while the relay answers the previous one."""

    def begin(self, message: OutgoingMessage) -> None:
        """Hand a message over without waiting for the relay."""
        ...

    def finish(self) -> Answer | None:
        """The outcome of the earliest message begun and not finished, in order; None when it
        was not attempted because one before it found the relay unreachable."""
        ...

    def reset(self) -> None:
        """Attempt messages again after a connection failure (a new batch begins)."""
        ...
