"""The dispatch run loop: claim due deliveries, re-check consent, hand each message to the sender,
collect the relay's replies, record the outcomes, release what was not sent.

What to do with each claimed delivery is decided in `decisions`; how many messages may wait for the
relay is `pacing`'s; the breaker and rate limit are the `throttle`'s; how fast each destination
domain group is sent to is the `destinations` pacer's."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from nurture.content.library import Content
from nurture.engine.assignment import Assigner
from nurture.engine.decisions import (
    Letterhead,
    MessageToSend,
    already_sent,
    decide,
    outcome_of_send,
    with_live,
)
from nurture.engine.destinations import HELD_BY_PACING, DestinationPacer
from nurture.engine.dispatch_run import Batch, DispatchReport, InFlight, Run, RunClock
from nurture.engine.pacing import MARK_EVERY, MARK_WITHIN
from nurture.engine.policy import DispatchPolicy
from nurture.engine.ports import (
    ClaimedDelivery,
    DeliveryStatus,
    DeliveryStore,
    LiveState,
    Outcome,
    Transport,
)
from nurture.engine.sending import BatchSender
from nurture.engine.throttle import Throttle, ThrottleSettings
from nurture.engine.tokens import LinkMaker
from nurture.rendering.types import Brand
from nurture.setting_values import DomainGroup

log = logging.getLogger(__name__)


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
    assigner: Assigner | None = None
    """Draws experiment arms; without one, steps under an experiment go out as written."""
    winners: Callable[[], Mapping[str, str]] = dict
    """The experiments' declared winners, read before each claim that may assign."""
    count_clicks: bool = False
    pacer: DestinationPacer = field(default_factory=DestinationPacer)
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
        if self.stopping or not self.throttle.ready():
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
        policy = self.policy
        run = Run(RunClock(now, self.monotonic(), self.monotonic), max_batches,
                   recheck_every=policy.recheck_interval.total_seconds(),
                   # What waits in the sender was re-checked before it was handed over: it may
                   # hold no more of the relay's time than the re-check interval allows.
                   ahead=min(policy.send_ahead, policy.recheck_interval).total_seconds())
        try:
            self._work(run)
        finally:
            # Also after an error (a dropped database connection mid-run): what was sent must
            # be recorded, or it comes back after the lease and goes out twice.
            self._settle(run)
        return run.report

    def _work(self, run: Run) -> None:
        """Claim and handle rows until none is due, `max_batches` claims are made, or the run
        must stop; whatever is left is released by the caller.

        Messages go to the relay ahead of its replies, to the relay process or to a thread
        (BatchSender): while the relay works, this thread records outcomes, re-checks consent,
        claims and renders, so a run goes at the relay's pace rather than at the sum of both.
        An outcome is made only from the relay's reply, and stamped with its time."""
        with BatchSender(self.transport, lambda: self.stopping, self.monotonic) as sender:
            try:
                self._feed(run, sender)
            except BaseException:
                self._finish_in_flight(run, raise_errors=False)
                raise
            self._finish_in_flight(run, raise_errors=True)

    def _feed(self, run: Run, sender: BatchSender) -> None:
        """Hand claimed rows to the sender, claiming more as they run out, until none is left or
        the run must stop."""
        while not self.stopping:
            if run.pending:
                if not self._next(run, sender):
                    return
            elif run.claims >= run.max_batches or not run.more or not self._claim(run):
                return

    def _next(self, run: Run, sender: BatchSender) -> bool:
        """Give the first pending row its outcome, or hand its message to the sender; False when
        the run must stop."""
        claim, batch = run.pending[0]
        state = self._live_state(run, claim)
        if state is None:
            # Another process may hold the row now; sending would duplicate its email.
            run.pending.popleft()
            batch.report.lease_lost += 1
            batch.open -= 1
            log.warning("lease lost before sending", extra={"delivery": str(claim.id)})
            return True
        if claim.accepted is not None:
            # A relay took it under a lease whose process died: recorded, not paced or sent.
            run.pending.popleft()
            self._add(run, batch, already_sent(claim, claim.accepted, batch.content,
                                               batch.letterhead))
            return True
        group = self.pacer.group_of(claim.subscriber.email)
        # A destination that asked us to slow down: held before anything is rendered for it.
        held = self._held(run, claim, group) if self.pacer.backing_off(group, self.monotonic()) \
            else None
        decided = held or decide(with_live(claim, state), batch.content, self.policy,
                                 batch.letterhead, batch.now)
        if isinstance(decided, MessageToSend):
            # A group with its window of messages with the relay waits for the earliest of them.
            while self.pacer.full(group) and run.in_flight:
                if not self._collect(run, run.in_flight.popleft()) or self.stopping:
                    return False
            decided = self._held(run, claim, group) or decided
        if isinstance(decided, Outcome):
            run.pending.popleft()
            self._add(run, batch, decided)
            return True
        if not self._may_send(run):
            return False
        run.pending.popleft()
        self.pacer.handed_over(group)
        run.in_flight.append(InFlight(decided, batch, self.monotonic(),
                                       sender.submit(decided.message), group))
        while len(run.in_flight) > run.pace.window(run.ahead):
            if not self._collect(run, run.in_flight.popleft()):
                return False  # the relay is unreachable: leave the rest for the next tick
        return True

    def _held(self, run: Run, claim: ClaimedDelivery, group: DomainGroup) -> Outcome | None:
        """None when a message may go to its destination group now; else the outcome that holds
        it back, unattempted (the group deferred us, or its rate is spent), while the rest of
        the queue moves on."""
        now = run.clock.now()
        wait, why = self.pacer.held_for(group, self.monotonic(), now)
        if wait <= 0:
            return None
        return Outcome(claim.id, DeliveryStatus.QUEUED, now, due_at=now + timedelta(seconds=wait),
                       error=f"{HELD_BY_PACING}{why}")

    def _hold_destination(self, run: Run, group: DomainGroup, until: datetime) -> None:
        """Move the group's waiting deliveries past its hold, so no claim brings them back
        before; the ones already claimed are held one by one (`_held`)."""
        reason = f"{HELD_BY_PACING}{group.name} asked us to slow down"
        try:
            moved = self.store.hold_destination(sorted(group.domains), until=until, reason=reason)
        except Exception as error:  # they are held as they are claimed instead
            log.warning("could not hold a destination's deliveries",
                        extra={"group": group.name, "error_type": type(error).__name__})
            return
        log.info("destination held", extra={"group": group.name, "until": until.isoformat(),
                                            "moved": moved})

    def _live_state(self, run: Run, claim: ClaimedDelivery) -> LiveState | None:
        """The row's consent and enrollment state, re-read every re-check interval; None when
        this process no longer holds its lease."""
        checked_at = run.checked_at
        if checked_at is None or self.monotonic() - checked_at >= run.recheck_every:
            # Record what went out since the last check: a sent row must not sit in `sending`
            # until the run ends, where a crash or an expired lease would have it sent again.
            # Then re-read the rest (an unsubscribe, pause, bounce or complaint may have landed
            # since the claim) and renew their leases.
            self._record(run)
            run.checked_at = self.monotonic()
            run.live = self.store.recheck([row.id for row, _ in run.pending], owner=self.owner,
                                          now=run.clock.now(), lease=self.policy.lease)
        return run.live.get(claim.id)

    def _may_send(self, run: Run) -> bool:
        """Ask the throttle; False when the breaker is open, or a stop came during a rate-limit
        wait."""
        if self.throttle.gate(lambda: self.stopping):
            return True
        # In half-open state the breaker waits for its trial, which may still be in flight:
        # hear it out, then ask again.
        if not run.in_flight or not self._collect_all(run):
            return False
        return self.throttle.gate(lambda: self.stopping)

    def _claim(self, run: Run) -> bool:
        """Claim the next batch into `run.pending`; False when none is due or the relay's
        breaker opened since the last claim."""
        if run.claims and not self.throttle.ready():
            return False
        # The rows sent so far are recorded before more are leased, as at the end of a batch:
        # what a crash can send twice stays one batch and the messages ahead of the relay.
        self._record(run)
        limit = self.claim_limit()
        # Time passes while a long run drains the queue: a later claim "at `now`" would get a
        # lease that is already over, and other processes would take its rows.
        now = run.clock.now() if run.claims else run.clock.start
        # The content read before the claim is the one its arms are drawn for and decided with.
        content = self.content()
        assign = (self.assigner.for_claims(content, self.winners())
                  if self.assigner is not None and content.experiments else None)
        claims = self.store.claim_due(now=now, owner=self.owner, limit=limit,
                                      lease=self.policy.lease, assign=assign)
        run.claims += 1
        run.more = len(claims) >= limit
        if not claims:
            return False
        letterhead = Letterhead(self.brand, self.links, self.message_id_domain, self.count_clicks)
        batch = Batch(now, content, letterhead, DispatchReport(claimed=len(claims)), len(claims))
        run.batches.append(batch)
        run.pending.extend((claim, batch) for claim in claims)
        run.checked_at = None  # an unsubscribe may land between the claim and the send
        return True

    def _collect(self, run: Run, item: InFlight) -> bool:
        """Wait for one send's reply and add its outcome; False when the run must stop (the
        relay is unreachable, or the message was not attempted)."""
        try:
            reply = item.reply.result()
        except BaseException:
            # Transports should not raise; if one does, a half-open breaker must not wait
            # forever for the outcome of its trial, and the row goes back to be released.
            if self.throttle.breaker is not None:
                self.throttle.breaker.record_failure()
            self.pacer.answered(item.group, None, self.monotonic())
            run.pending.appendleft((item.message.claim, item.batch))
            raise
        hold_ends = self.pacer.answered(item.group, reply.result if reply is not None else None,
                                        reply.at if reply is not None else self.monotonic())
        if hold_ends is not None:
            self._hold_destination(run, item.group, run.clock.at(hold_ends))
        if reply is None:
            run.pending.appendleft((item.message.claim, item.batch))
            return False
        run.pace.replied(item.handed_at, reply.at)
        self.throttle.observe(reply.result)
        # Plans and retries count from the claim's time; the record says when the relay took
        # the message.
        outcome = replace(outcome_of_send(item.message, reply.result, self.policy, item.batch.now),
                          at=run.clock.at(reply.at))
        self._add(run, item.batch, outcome)
        if outcome.status is DeliveryStatus.SENT:
            self._accepted(run, outcome)
        return not (outcome.status is DeliveryStatus.DEFERRED and outcome.error == "connection")

    def _collect_all(self, run: Run) -> bool:
        reachable = True
        while run.in_flight:
            reachable = self._collect(run, run.in_flight.popleft()) and reachable
        return reachable

    def _finish_in_flight(self, run: Run, *, raise_errors: bool) -> None:
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

    def _add(self, run: Run, batch: Batch, outcome: Outcome) -> None:
        run.unrecorded.append(outcome)
        batch.open -= 1
        batch.report.count(outcome)

    def _accepted(self, run: Run, outcome: Outcome) -> None:
        """Mark the relay's acceptances on their rows every MARK_EVERY replies or MARK_WITHIN
        seconds: a crash before the record then re-sends only the messages with the relay and
        the acceptances since the last mark (SEND_AHEAD_LIMIT in all), not a second of sending.
        """
        unmarked = run.unmarked
        if not unmarked:
            run.unmarked_since = self.monotonic()
        unmarked.append(outcome)
        if len(unmarked) >= MARK_EVERY or self.monotonic() - run.unmarked_since >= MARK_WITHIN:
            self._retrying("mark", lambda: self.store.mark_accepted(unmarked, owner=self.owner))
            run.unmarked = []

    def _record(self, run: Run) -> None:
        unrecorded = run.unrecorded
        if unrecorded:
            self._retrying("record", lambda: self.store.record(unrecorded, owner=self.owner))
            run.unrecorded = []
            run.unmarked = []  # recorded in full, which is more than marked
        # A batch with no row open has had all its outcomes in what was just recorded.
        finished = [batch for batch in run.batches if batch.open == 0]
        for batch in finished:
            self._close(run, batch)

    def _settle(self, run: Run) -> None:
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

    def _close(self, run: Run, batch: Batch) -> None:
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
