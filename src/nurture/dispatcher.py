"""One dispatch pass: claim due deliveries, re-check consent, render, send, record, queue the next step."""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from datetime import datetime, timedelta
from uuid import UUID

from nurture.content import Content
from nurture.model import Profile, Sequence, Step
from nurture.planner import in_window, next_in_window, plan_next
from nurture.ports import (
    ClaimedDelivery,
    DeliveryKind,
    DeliveryStatus,
    DeliveryStore,
    EnrollmentStatus,
    Outcome,
    OutgoingMessage,
    SendErrorKind,
    SendResult,
    SubscriberStatus,
    Transport,
)
from nurture.rendering import Brand, Links, Recipient, build_message
from nurture.tokens import LinkMaker

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
    _stopping: threading.Event = field(default_factory=threading.Event)

    def request_stop(self) -> None:
        """Finish the message in flight, release the rest of the batch, then return."""
        self._stopping.set()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def run(self, now: datetime, *, max_batches: int = 1_000_000) -> DispatchReport:
        """Send everything due at `now`: batches until a claim comes back short or a stop is asked."""
        total = DispatchReport()
        for _ in range(max_batches):
            if self.stopping:
                break
            report = self.run_batch(now)
            total.add(report)
            if report.claimed < self.policy.batch_size or report.released:
                break
        return total

    def run_batch(self, now: datetime) -> DispatchReport:
        report = DispatchReport()
        claims = self.store.claim_due(now=now, owner=self.owner, limit=self.policy.batch_size,
                                      lease=self.policy.lease)
        report.claimed = len(claims)
        if not claims:
            return report
        content = self.content()
        outcomes: list[Outcome] = []
        unsent: list[UUID] = []
        for index, claim in enumerate(claims):
            if self.stopping:
                unsent = [c.id for c in claims[index:]]
                break
            outcome = self._handle(claim, content, now)
            outcomes.append(outcome)
            self._count(report, outcome)
            if outcome.status is DeliveryStatus.DEFERRED and outcome.error == "connection":
                # The relay is unreachable: leave the rest untouched for the next tick.
                unsent = [c.id for c in claims[index + 1:]]
                break
        self.store.record(outcomes, owner=self.owner)
        if unsent:
            self.store.release(unsent, owner=self.owner)
            report.released = len(unsent)
        log.info("dispatch batch", extra={"owner": self.owner, **report.as_dict()})
        return report

    @staticmethod
    def _count(report: DispatchReport, outcome: Outcome) -> None:
        if outcome.status is DeliveryStatus.QUEUED:
            report.held += 1
        else:
            name = outcome.status.value
            setattr(report, name, getattr(report, name) + 1)

    def _handle(self, claim: ClaimedDelivery, content: Content, now: datetime) -> Outcome:
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

    def _confirmation(self, claim: ClaimedDelivery, content: Content, now: datetime) -> Outcome:
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
              links: Links, now: datetime) -> Outcome:
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
        result = self.transport.send(OutgoingMessage(
            envelope_from=self.brand_address, recipients=(subscriber.email,), data=data,
            message_id=message_id))
        return self._after_send(claim, sequence, profile, result, message_id, content.version, now)

    @property
    def brand_address(self) -> str:
        from email.utils import parseaddr

        return parseaddr(self.brand.sender)[1]

    def _after_send(self, claim: ClaimedDelivery, sequence: Sequence, profile: Profile,
                    result: SendResult, message_id: str, version: str, now: datetime) -> Outcome:
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
