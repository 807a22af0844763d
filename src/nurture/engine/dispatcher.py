"""One dispatch pass: claim due deliveries, re-check consent, render, send, record, queue the next step."""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from datetime import datetime, timedelta
from email.utils import parseaddr
from functools import lru_cache
from uuid import UUID

from nurture.content.library import Content
from nurture.domain.model import Profile, Sequence, Step
from nurture.engine.planner import in_window, next_in_window, plan_next
from nurture.engine.ports import (
    ClaimedDelivery,
    DeliveryKind,
    DeliveryStatus,
    DeliveryStore,
    EnrollmentStatus,
    LiveState,
    Outcome,
    OutgoingMessage,
    SendErrorKind,
    SendResult,
    SubscriberStatus,
    Transport,
)
from nurture.engine.sending import BatchSender, PendingReply
from nurture.engine.throttle import Throttle, ThrottleSettings
from nurture.engine.tokens import LinkMaker
from nurture.rendering.mime import build_message
from nurture.rendering.types import Brand, Links, Recipient

log = logging.getLogger(__name__)

SYSTEM_SEQUENCE = "system"
CONFIRM_STEP = "confirm"


@dataclass(frozen=True)
class DispatchPolicy:
    batch_size: int = 200
    lease: timedelta = timedelta(minutes=5)
    retry_base: timedelta = timedelta(minutes=1)
    retry_max: timedelta = timedelta(hours=6)
    max_attempts: int = 8
    paused_recheck: timedelta = timedelta(days=1)
    recheck_interval: timedelta = timedelta(seconds=1)
    """How often, within a batch, the outcomes so far are recorded and the consent and leases of
    the rest re-read and renewed; 0 does it before every send (one more transaction each)."""
    send_ahead: timedelta = timedelta(milliseconds=100)
    """How much of the relay's time the messages handed over ahead of its replies may hold, at
    the relay's recent pace (at most the re-check interval): enough to keep it busy while a
    claim or a record runs, little enough that a stop waits no longer."""
    store_retry: timedelta = timedelta(seconds=30)
    """How long to keep retrying the write of a batch's outcomes (capped at half the lease)."""


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


def message_id_for(delivery_id: UUID, domain: str) -> str:
    """Deterministic, so a retry after a crash carries the same Message-ID as the first attempt."""
    return f"<{delivery_id.hex}@{domain}>"


def retry_delay(delivery_id: UUID, attempts: int, policy: DispatchPolicy) -> timedelta:
    """Exponential backoff with up to 25% jitter, derived from the id so that runs are repeatable."""
    base: timedelta = policy.retry_base * (2 ** min(max(attempts - 1, 0), 30))
    jitter = int.from_bytes(hashlib.sha256(delivery_id.bytes).digest()[:2], "big") / 65535 * 0.25
    delay: timedelta = min(base * (1 + jitter), policy.retry_max)
    return delay


def _profile(claim: ClaimedDelivery) -> Profile:
    s = claim.subscriber
    return Profile(time_zone=s.time_zone, hesitations=s.hesitations, discreet=s.discreet,
                   locale=s.locale)


SEND_AHEAD_LIMIT = 64
"""At most this many messages wait in the sender behind the one the relay is taking."""


@dataclass(frozen=True)
class _Ready:
    """A message rendered for a claim, with what its outcome will need."""

    claim: ClaimedDelivery
    sequence: Sequence
    profile: Profile
    message: OutgoingMessage
    content_version: str


@dataclass
class _Batch:
    """The rows of one claim: the time and content they are handled with, and their report."""

    now: datetime
    """The claim's time: plans and retries count from it, so schedules do not drift by how long
    a run takes."""
    content: Content
    report: DispatchReport
    open: int
    """Rows without an outcome yet; once none is, the next record holds the last of them and
    the batch is logged."""


@dataclass(frozen=True)
class _InFlight:
    ready: _Ready
    batch: _Batch
    handed_at: float
    reply: PendingReply


@dataclass(frozen=True)
class _RunClock:
    """Times within a run: its `now` moved on by the monotonic clock."""

    start: datetime
    started: float
    monotonic: Callable[[], float]

    def at(self, moment: float) -> datetime:
        return self.start + timedelta(seconds=moment - self.started)

    def now(self) -> datetime:
        return self.at(self.monotonic())


class _Pace:
    """The relay's time per message, from its replies: how many messages may wait for it."""

    def __init__(self) -> None:
        self._last_reply: float | None = None
        self.per_message: float | None = None

    def replied(self, handed_at: float, at: float) -> None:
        if self._last_reply is not None:
            # The relay took this message up when it had answered the one before or when the
            # message was handed over, whichever came later: a wait for the database between
            # batches is not the relay's time.
            took = max(at - max(self._last_reply, handed_at), 0.0)
            previous = self.per_message
            self.per_message = took if previous is None else 0.8 * previous + 0.2 * took
        self._last_reply = at

    def window(self, seconds: float) -> int:
        """Messages the relay gets through in `seconds`: at least one, at most the limit; one
        until the relay's pace is known."""
        if self.per_message is None:
            return 1
        if self.per_message * SEND_AHEAD_LIMIT <= seconds:
            return SEND_AHEAD_LIMIT
        return max(1, int(seconds / self.per_message + 1e-9))  # 0.1 / 0.02 is 4.999...


@dataclass
class _Run:
    """One run's progress: claimed rows not yet handed over, messages with the relay, outcomes not
    yet recorded, and the batches not yet logged."""

    clock: _RunClock
    pending: deque[tuple[ClaimedDelivery, _Batch]] = field(default_factory=deque)
    in_flight: deque[_InFlight] = field(default_factory=deque)
    unrecorded: list[Outcome] = field(default_factory=list)
    batches: list[_Batch] = field(default_factory=list)
    claims: int = 0
    more: bool = True
    """The last claim came back full: more rows may be due."""
    pace: _Pace = field(default_factory=_Pace)
    report: DispatchReport = field(default_factory=DispatchReport)


@dataclass
class Dispatcher:
    """Owns one process's sending: the store and transport are ports, content comes from a holder."""

    store: DeliveryStore
    transport: Transport
    content: Callable[[], Content]
    brand: Brand
    links: LinkMaker
    owner: str
    message_id_domain: str
    policy: DispatchPolicy = field(default_factory=DispatchPolicy)
    # The default settings: a breaker after 5 failures, no rate limit. The runtime passes the real ones.
    throttle: Throttle = field(default_factory=lambda: Throttle.from_settings(ThrottleSettings()))
    monotonic: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    _stopping: threading.Event = field(default_factory=threading.Event)

    def request_stop(self) -> None:
        """Hear out the messages with the relay, release the rest of the claim, then return."""
        self._stopping.set()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def run(self, now: datetime, *, max_batches: int = 1_000_000) -> DispatchReport:
        """Send everything due at `now`: claims until one comes back short, the relay's breaker is
        open or a stop is asked. Each claim after the first is made while the relay still has
        messages of the one before, so that it does not wait for the database between claims."""
        if self.stopping or not self._relay_ready():
            return DispatchReport()
        return self._run(now, max_batches)

    def run_batch(self, now: datetime) -> DispatchReport:
        """One claim, sent and recorded."""
        return self._run(now, 1)

    def claim_limit(self) -> int:
        """The batch size, or less when the rate limit could not send a full batch within half
        the lease: rows held here wait for this process while others could send them, and after
        a crash they wait out the lease."""
        limit = self.policy.batch_size
        limiter = self.throttle.limiter
        if limiter is not None:
            limit = min(limit, limiter.sends_within(self.policy.lease.total_seconds() / 2))
        return limit

    def _run(self, now: datetime, max_batches: int) -> DispatchReport:
        run = _Run(_RunClock(now, self.monotonic(), self.monotonic))
        try:
            self._work(run, max_batches)
        finally:
            # Also after an error (a dropped database connection mid-run): what was sent must
            # be recorded, or it comes back after the lease and goes out twice.
            self._settle(run)
        return run.report

    def _work(self, run: _Run, max_batches: int) -> None:
        """Claim and handle rows until none is due, `max_batches` claims are made, or the run
        must stop; whatever is left is released by the caller.

        Messages go to the relay ahead of its replies, to the relay process or to a thread
        (BatchSender): while the relay works, this thread records outcomes, re-checks consent,
        claims and renders, so a run goes at the relay's pace rather than at the sum of both.
        An outcome is made only from the relay's reply, and stamped with its time."""
        with BatchSender(self.transport, lambda: self.stopping, self.monotonic) as sender:
            try:
                self._feed(run, sender, max_batches)
            except BaseException:
                self._finish_in_flight(run, raise_errors=False)
                raise
            self._finish_in_flight(run, raise_errors=True)

    def _feed(self, run: _Run, sender: BatchSender, max_batches: int) -> None:
        """Hand claimed rows to the sender, claiming more as they run out, until none is left or
        the run must stop."""
        interval = self.policy.recheck_interval.total_seconds()
        # What waits in the sender was re-checked before it was handed over: it may hold no more
        # of the relay's time than the re-check interval allows.
        ahead = min(self.policy.send_ahead, self.policy.recheck_interval).total_seconds()
        live: dict[UUID, LiveState] = {}
        checked_at: float | None = None
        pending = run.pending
        while True:
            if self.stopping:
                return
            if not pending:
                if run.claims >= max_batches or not run.more or not self._claim(run):
                    return
                checked_at = None  # an unsubscribe may land between the claim and the send
                continue
            claim, batch = pending[0]
            if checked_at is None or self.monotonic() - checked_at >= interval:
                # Record what went out since the last check: a sent row must not sit in
                # `sending` until the run ends, where a crash or an expired lease would have it
                # sent again. Then re-read the rest (an unsubscribe, pause, bounce or complaint
                # may have landed since the claim) and renew their leases.
                self._record(run)
                checked_at = self.monotonic()
                live = self.store.recheck([row.id for row, _ in pending], owner=self.owner,
                                          now=run.clock.now(), lease=self.policy.lease)
            state = live.get(claim.id)
            if state is None:
                # Another process may hold the row now; sending would duplicate its email.
                pending.popleft()
                batch.report.lease_lost += 1
                batch.open -= 1
                log.warning("lease lost before sending", extra={"delivery": str(claim.id)})
                continue
            handled = self._handle(_with_live(claim, state), batch.content, batch.now)
            if isinstance(handled, Outcome):
                pending.popleft()
                self._add(run, batch, handled)
                continue
            if not self._gate():
                # In half-open state the breaker waits for its trial, which may still
                # be in flight: hear it out, then ask again.
                if not run.in_flight or not self._collect_all(run):
                    return
                if not self._gate():
                    return  # the breaker is open, or a stop came during a rate-limit wait
            pending.popleft()
            run.in_flight.append(_InFlight(handled, batch, self.monotonic(),
                                           sender.submit(handled.message)))
            while len(run.in_flight) > run.pace.window(ahead):
                if not self._collect(run, run.in_flight.popleft()):
                    return  # the relay is unreachable: leave the rest for the next tick

    def _claim(self, run: _Run) -> bool:
        """Claim the next batch into `run.pending`; False when none is due or the relay's
        breaker opened since the last claim."""
        if run.claims and not self._relay_ready():
            return False
        # The rows sent so far are recorded before more are leased, as at the end of a batch:
        # what a crash can send twice stays one batch and the messages ahead of the relay.
        self._record(run)
        limit = self.claim_limit()
        # Time passes while a long run drains the queue: a later claim "at `now`" would get a
        # lease that is already over, and other processes would take its rows.
        now = run.clock.now() if run.claims else run.clock.start
        claims = self.store.claim_due(now=now, owner=self.owner, limit=limit,
                                      lease=self.policy.lease)
        run.claims += 1
        run.more = len(claims) >= limit
        if not claims:
            return False
        batch = _Batch(now=now, content=self.content(), report=DispatchReport(claimed=len(claims)),
                       open=len(claims))
        run.batches.append(batch)
        run.pending.extend((claim, batch) for claim in claims)
        return True

    def _collect(self, run: _Run, item: _InFlight) -> bool:
        """Wait for one send's reply and add its outcome; False when the run must stop (the
        relay is unreachable, or the message was not attempted)."""
        try:
            reply = item.reply.result()
        except BaseException:
            # Transports should not raise; if one does, a half-open breaker must not wait
            # forever for the outcome of its trial, and the row goes back to be released.
            if self.throttle.breaker is not None:
                self.throttle.breaker.record_failure()
            run.pending.appendleft((item.ready.claim, item.batch))
            raise
        if reply is None:
            run.pending.appendleft((item.ready.claim, item.batch))
            return False
        run.pace.replied(item.handed_at, reply.at)
        self._observe(reply.result)
        # Plans and retries count from the claim's time; the record says when the relay took
        # the message.
        outcome = replace(self._after_send(item.ready, reply.result, item.batch.now),
                          at=run.clock.at(reply.at))
        self._add(run, item.batch, outcome)
        return not (outcome.status is DeliveryStatus.DEFERRED and outcome.error == "connection")

    def _collect_all(self, run: _Run) -> bool:
        reachable = True
        while run.in_flight:
            reachable = self._collect(run, run.in_flight.popleft()) and reachable
        return reachable

    def _finish_in_flight(self, run: _Run, *, raise_errors: bool) -> None:
        """Every message handed to the sender gets its outcome, even when the run ends on an
        error: a message that went out and is not recorded would go out again after the lease."""
        first_error: BaseException | None = None
        while run.in_flight:
            try:
                self._collect(run, run.in_flight.popleft())
            except BaseException as error:
                first_error = first_error or error
        if first_error is not None and raise_errors:
            raise first_error

    def _add(self, run: _Run, batch: _Batch, outcome: Outcome) -> None:
        run.unrecorded.append(outcome)
        batch.open -= 1
        self._count(batch.report, outcome)

    def _record(self, run: _Run) -> None:
        unrecorded = run.unrecorded
        if unrecorded:
            self._retrying("record", lambda: self.store.record(unrecorded, owner=self.owner))
            run.unrecorded = []
        # A batch with no row open has had all its outcomes in what was just recorded.
        finished = [batch for batch in run.batches if batch.open == 0]
        for batch in finished:
            self._close(run, batch)

    def _settle(self, run: _Run) -> None:
        self._record(run)
        if run.pending:
            unsent = [claim.id for claim, _ in run.pending]
            self._retrying("release", lambda: self.store.release(unsent, owner=self.owner))
            for _, batch in run.pending:
                batch.report.released += 1
                batch.open -= 1
            run.pending.clear()
        for batch in list(run.batches):
            self._close(run, batch)

    def _close(self, run: _Run, batch: _Batch) -> None:
        run.batches.remove(batch)
        run.report.add(batch.report)
        log.info("dispatch batch", extra={"owner": self.owner, **batch.report.as_dict()})

    def _retrying(self, action: str, write: Callable[[], None]) -> None:
        """Run a store write, retrying for a while on errors (a restarted or failed-over database
        drops connections; the pool replaces them), then give up by raising."""
        budget = min(self.policy.store_retry, self.policy.lease / 2).total_seconds()
        deadline = self.monotonic() + budget
        delay = 0.1
        attempt = 1
        while True:
            try:
                write()
                return
            except (ValueError, TypeError):
                raise  # a contradictory outcome is a bug, not an outage
            except Exception as error:
                if self.monotonic() + delay > deadline:
                    raise
                log.warning("store write failed; retrying", extra={
                    "action": action, "attempt": attempt, "error_type": type(error).__name__})
                self.sleep(delay)
                delay = min(delay * 2, 5.0)
                attempt += 1

    def _relay_ready(self) -> bool:
        breaker = self.throttle.breaker
        return breaker is None or breaker.ready()

    def _gate(self) -> bool:
        """Wait for the rate limit and ask the breaker; False means "do not send now"."""
        breaker = self.throttle.breaker
        if breaker is not None and not breaker.ready():
            return False
        limiter = self.throttle.limiter
        if limiter is not None and not limiter.acquire(lambda: self.stopping):
            return False
        # After the wait: ask last, since in half-open state this takes the single trial.
        return breaker is None or breaker.allow()

    def _observe(self, result: SendResult) -> None:
        breaker = self.throttle.breaker
        if breaker is None:
            return
        # A permanent refusal is an answer about the recipient from a relay that works.
        if result.ok or result.error_kind is SendErrorKind.PERMANENT:
            breaker.record_success()
        else:
            breaker.record_failure()

    @staticmethod
    def _count(report: DispatchReport, outcome: Outcome) -> None:
        if outcome.status is DeliveryStatus.QUEUED:
            report.held += 1
        else:
            name = outcome.status.value
            setattr(report, name, getattr(report, name) + 1)

    def _handle(self, claim: ClaimedDelivery, content: Content, now: datetime) -> Outcome | _Ready:
        """The outcome for one claim, or the message to send for it."""
        if claim.unreadable is not None:
            # Sending without the first name and answers would be a different email; retry
            # (with backoff, then fail) so that restoring the key lets it go out as written.
            return self._retry(claim, now, None, claim.unreadable, content.version)
        if claim.kind is DeliveryKind.CONFIRMATION:
            return self._confirmation(claim, content, now)
        if claim.kind is not DeliveryKind.STEP or claim.enrollment is None:
            return Outcome(claim.id, DeliveryStatus.SKIPPED, now,
                           error=f"no sender for {claim.kind.value} emails in this version")
        enrollment = claim.enrollment
        subscriber = claim.subscriber
        if subscriber.status is not SubscriberStatus.ACTIVE:
            return Outcome(claim.id, DeliveryStatus.SKIPPED, now,
                           error=f"subscriber {subscriber.status.value}",
                           end_enrollment=EnrollmentStatus.EXITED,
                           end_reason=subscriber.status.value)
        if claim.suppressed:
            return Outcome(claim.id, DeliveryStatus.SKIPPED, now, error="address suppressed",
                           end_enrollment=EnrollmentStatus.EXITED, end_reason="suppressed")
        if enrollment.status in (EnrollmentStatus.COMPLETED, EnrollmentStatus.EXITED):
            return Outcome(claim.id, DeliveryStatus.SKIPPED, now, error="enrollment ended")
        sequence = content.sequences.get(enrollment.sequence_key)
        if sequence is None:
            # The sequence file was removed or is being renamed: keep the email, look again later.
            return Outcome(claim.id, DeliveryStatus.QUEUED, now, due_at=now + timedelta(hours=1),
                           error=f"sequence '{enrollment.sequence_key}' is not in the content")
        profile = _profile(claim)
        if enrollment.status is EnrollmentStatus.PAUSED:
            until = enrollment.paused_until
            if until is None or until > now:
                resume = until if until is not None else now + self.policy.paused_recheck
                return Outcome(claim.id, DeliveryStatus.QUEUED, now,
                               due_at=next_in_window(sequence.window, profile.time_zone, resume),
                               error="paused")
        step = sequence.step(claim.step_key or "")
        if step is None:
            return self._skip(claim, sequence, profile, now, "step removed from the content")
        if step.when is not None and not step.when.matches(profile):
            return self._skip(claim, sequence, profile, now,
                              "condition not met: " + step.when.describe())
        if not in_window(sequence.window, profile.time_zone, now):
            # Quiet hours hold even after an outage: wait for the subscriber's next window.
            return Outcome(claim.id, DeliveryStatus.QUEUED, now,
                           due_at=next_in_window(sequence.window, profile.time_zone, now),
                           error="outside send window")
        return self._send(claim, content, sequence, step, self.links.for_subscriber(subscriber.id),
                          now)

    def _confirmation(self, claim: ClaimedDelivery, content: Content,
                      now: datetime) -> Outcome | _Ready:
        """The double opt-in email: only to a pending subscriber, at any hour, nothing queued after."""
        subscriber = claim.subscriber
        if subscriber.status is not SubscriberStatus.PENDING:
            return Outcome(claim.id, DeliveryStatus.SKIPPED, now,
                           error=f"subscriber {subscriber.status.value}, not pending")
        if claim.suppressed:
            return Outcome(claim.id, DeliveryStatus.SKIPPED, now, error="address suppressed")
        system = content.sequences.get(SYSTEM_SEQUENCE)
        step = system.step(CONFIRM_STEP) if system is not None else None
        if system is None or step is None:
            return Outcome(claim.id, DeliveryStatus.QUEUED, now, due_at=now + timedelta(hours=1),
                           error=f"no '{CONFIRM_STEP}' step in sequences/{SYSTEM_SEQUENCE}.yaml")
        links = replace(self.links.for_subscriber(subscriber.id),
                        action_url=self.links.confirm_url(subscriber.id))
        return self._send(claim, content, system, step, links, now)

    def _send(self, claim: ClaimedDelivery, content: Content, sequence: Sequence, step: Step,
              links: Links, now: datetime) -> Outcome | _Ready:
        """Render and build the message; the caller sends it. A render error is the outcome."""
        subscriber = claim.subscriber
        profile = _profile(claim)
        message_id = message_id_for(claim.id, self.message_id_domain)
        try:
            rendered = content.library.render(
                sequence, step, Recipient(subscriber.email, subscriber.first_name, profile),
                links, self.brand)
            data = build_message(rendered, to=subscriber.email, message_id=message_id,
                                 links=links, date=now)
        except Exception as error:  # a render bug must not stop the batch; the row stays retryable
            log.exception("render failed", extra={"delivery": str(claim.id), "step": step.key})
            return self._retry(claim, now, None, f"render error: {type(error).__name__}",
                               content.version)
        message = OutgoingMessage(envelope_from=self.brand_address, recipients=(subscriber.email,),
                                  data=data, message_id=message_id)
        return _Ready(claim, sequence, profile, message, content.version)

    @property
    def brand_address(self) -> str:
        return _address_of(self.brand.sender)

    def _after_send(self, ready: _Ready, result: SendResult, now: datetime) -> Outcome:
        claim, sequence, profile = ready.claim, ready.sequence, ready.profile
        message_id, version = ready.message.message_id, ready.content_version
        if result.ok and (claim.enrollment is None or claim.step_key is None):
            return Outcome(claim.id, DeliveryStatus.SENT, now, smtp_code=result.code,
                           message_id=message_id, content_version=version, count_attempt=True)
        if result.ok:
            assert claim.enrollment is not None and claim.step_key is not None
            done = claim.enrollment.done_step_keys | {claim.step_key}
            plan = plan_next(sequence, profile, done_step_keys=done, anchor=now)
            finished = plan.step is None
            return Outcome(claim.id, DeliveryStatus.SENT, now, smtp_code=result.code,
                           message_id=message_id, content_version=version, count_attempt=True,
                           next_delivery=plan.as_next_delivery(),
                           end_enrollment=EnrollmentStatus.COMPLETED if finished else None,
                           end_reason="finished" if finished else None)
        if result.error_kind is SendErrorKind.PERMANENT:
            log.warning("hard bounce", extra={"delivery": str(claim.id), "code": result.code})
            return Outcome(claim.id, DeliveryStatus.BOUNCED, now, smtp_code=result.code,
                           error=result.message, message_id=message_id, count_attempt=True,
                           end_enrollment=EnrollmentStatus.EXITED if claim.enrollment else None,
                           end_reason="bounced" if claim.enrollment else None,
                           suppress_reason=f"hard bounce {result.code}")
        if result.error_kind is SendErrorKind.CONNECTION:
            log.warning("smtp connection failed", extra={"delivery": str(claim.id)})
            return Outcome(claim.id, DeliveryStatus.DEFERRED, now,
                           due_at=now + retry_delay(claim.id, 1, self.policy),
                           error="connection", smtp_code=result.code, count_attempt=False)
        return self._retry(claim, now, result.code, result.message, version)

    def _retry(self, claim: ClaimedDelivery, now: datetime, code: int | None, error: str,
               version: str) -> Outcome:
        attempts = claim.attempts + 1
        if attempts >= self.policy.max_attempts:
            log.warning("delivery failed", extra={"delivery": str(claim.id), "code": code,
                                                  "attempts": attempts})
            return Outcome(claim.id, DeliveryStatus.FAILED, now, smtp_code=code, error=error,
                           content_version=version, count_attempt=True)
        return Outcome(claim.id, DeliveryStatus.DEFERRED, now,
                       due_at=now + retry_delay(claim.id, attempts, self.policy),
                       smtp_code=code, error=error, content_version=version, count_attempt=True)

    def _skip(self, claim: ClaimedDelivery, sequence: Sequence, profile: Profile, now: datetime,
              reason: str) -> Outcome:
        assert claim.enrollment is not None and claim.step_key is not None
        done = claim.enrollment.done_step_keys | {claim.step_key}
        # Anchor on the skipped row's due time, which already includes the skipped step's delay.
        plan = plan_next(sequence, profile, done_step_keys=done, anchor=claim.due_at)
        finished = plan.step is None
        return Outcome(claim.id, DeliveryStatus.SKIPPED, now, error=reason,
                       next_delivery=plan.as_next_delivery(),
                       end_enrollment=EnrollmentStatus.COMPLETED if finished else None,
                       end_reason="finished" if finished else None)


@lru_cache(maxsize=8)
def _address_of(sender: str) -> str:
    return parseaddr(sender)[1]


def _with_live(claim: ClaimedDelivery, state: LiveState) -> ClaimedDelivery:
    """The claim with its consent and enrollment state replaced by the one read just now."""
    enrollment = claim.enrollment
    if (state.subscriber_status is claim.subscriber.status and state.suppressed == claim.suppressed
            and (enrollment is None or state.enrollment_status is None
                 or (state.enrollment_status is enrollment.status
                     and state.paused_until == enrollment.paused_until))):
        return claim  # nothing changed since the claim, the usual case
    if enrollment is not None and state.enrollment_status is not None:
        enrollment = replace(enrollment, status=state.enrollment_status,
                             paused_until=state.paused_until)
    return replace(claim, subscriber=replace(claim.subscriber, status=state.subscriber_status),
                   suppressed=state.suppressed, enrollment=enrollment)
