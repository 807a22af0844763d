"""What to do with one claimed delivery, decided without a clock, a store or a transport: from the
claim, the content, the policy and `now`, the outcome to record or the message to send; from the
relay's reply to that message, its outcome."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from email.utils import parseaddr
from functools import lru_cache
from uuid import UUID

from nurture.content.library import Content
from nurture.domain.experiments import HOLDOUT
from nurture.domain.model import Profile, Sequence, Step
from nurture.engine.click_links import count_clicks
from nurture.engine.planner import in_window, next_in_window, plan_next
from nurture.engine.policy import DispatchPolicy
from nurture.engine.ports import (
    AcceptedSend,
    ClaimedDelivery,
    DeliveryKind,
    DeliveryStatus,
    EnrollmentSnapshot,
    EnrollmentStatus,
    LiveState,
    Outcome,
    OutgoingMessage,
    SendErrorKind,
    SendResult,
    SubscriberStatus,
)
from nurture.engine.tokens import LinkMaker
from nurture.rendering.mime import message_parts
from nurture.rendering.types import Brand, Links, Recipient

log = logging.getLogger(__name__)

SYSTEM_SEQUENCE = "system"
CONFIRM_STEP = "confirm"
LOOK_AGAIN = timedelta(hours=1)
"""How long an email waits for content that is missing (a sequence removed or being renamed)."""
HOLDOUT_REASON = "holdout of experiment"
"""How a holdout's skipped row reads; results count the holdout by it."""
AT_ONCE_FOR = timedelta(hours=1)
"""How long after confirming an immediate first email may still go out outside the send window.
Enough for the first retries of a relay hiccup (1, 2, 4, 8, 16 minutes); after an hour the person
may well have gone back to sleep, so a longer outage leaves it to the window like any other."""


@dataclass(frozen=True)
class Letterhead:
    """Who the messages are from, and how their links and Message-IDs are made."""

    brand: Brand
    links: LinkMaker
    message_id_domain: str
    count_clicks: bool = False
    """Body links go through the first-party click redirect (NURTURE_CLICK_COUNTING)."""

    @property
    def envelope_from(self) -> str:
        return _address_of(self.brand.sender)


@dataclass(frozen=True)
class MessageToSend:
    """A message rendered for a claim, with what its outcome will need."""

    claim: ClaimedDelivery
    sequence: Sequence
    profile: Profile
    message: OutgoingMessage
    content_version: str


def message_id_for(delivery_id: UUID, domain: str) -> str:
    """Deterministic, so a retry after a crash carries the same Message-ID as the first attempt."""
    return f"<{delivery_id.hex}@{domain}>"


def retry_delay(delivery_id: UUID, attempts: int, policy: DispatchPolicy) -> timedelta:
    """Exponential backoff with up to 25% jitter, derived from the id so that runs are repeatable."""
    base: timedelta = policy.retry_base * (2 ** min(max(attempts - 1, 0), 30))
    jitter = int.from_bytes(hashlib.sha256(delivery_id.bytes).digest()[:2], "big") / 65535 * 0.25
    delay: timedelta = min(base * (1 + jitter), policy.retry_max)
    return delay


def profile_of(claim: ClaimedDelivery) -> Profile:
    s = claim.subscriber
    return Profile(time_zone=s.time_zone, hesitations=s.hesitations, discreet=s.discreet,
                   locale=s.locale)


def with_live(claim: ClaimedDelivery, state: LiveState) -> ClaimedDelivery:
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


def decide(claim: ClaimedDelivery, content: Content, policy: DispatchPolicy,
           letterhead: Letterhead, now: datetime) -> Outcome | MessageToSend:
    """The outcome for one claim, or the message to send for it."""
    if claim.accepted is not None:
        return already_sent(claim, claim.accepted, content, letterhead)
    if claim.unreadable is not None:
        # Sending without the first name and answers would be a different email; retry
        # (with backoff, then fail) so that restoring the key lets it go out as written.
        return _retry(claim, now, None, claim.unreadable, content.version, policy)
    if claim.kind is DeliveryKind.CONFIRMATION:
        return _confirmation(claim, content, policy, letterhead, now)
    if claim.kind is not DeliveryKind.STEP or claim.enrollment is None:
        return Outcome(claim.id, DeliveryStatus.SKIPPED, now,
                       error=f"no sender for {claim.kind.value} emails in this version")
    return _step(claim, claim.enrollment, content, policy, letterhead, now)


def _step(claim: ClaimedDelivery, enrollment: EnrollmentSnapshot, content: Content,
          policy: DispatchPolicy, letterhead: Letterhead, now: datetime) -> Outcome | MessageToSend:
    """A sequence step: sent when the subscriber and the enrollment still want it, the step is
    still in the content, its condition holds and the subscriber's send window is open."""
    ended = _ended(claim, enrollment, now)
    if ended is not None:
        return ended
    sequence = content.sequences.get(enrollment.sequence_key)
    if sequence is None:
        # The sequence file was removed or is being renamed: keep the email, look again later.
        return Outcome(claim.id, DeliveryStatus.QUEUED, now, due_at=now + LOOK_AGAIN,
                       error=f"sequence '{enrollment.sequence_key}' is not in the content")
    profile = profile_of(claim)
    paused = _paused(claim, enrollment, sequence, profile, policy, now)
    if paused is not None:
        return paused
    step = sequence.step(claim.step_key or "")
    if step is None:
        return _skip(claim, sequence, profile, now, "step removed from the content")
    if step.when is not None and not step.when.matches(profile):
        return _skip(claim, sequence, profile, now, "condition not met: " + step.when.describe())
    assignment = claim.assignment
    if step.experiment is not None and assignment is not None \
            and assignment.experiment_key == step.experiment.key:
        if assignment.arm == HOLDOUT:
            # The holdout's delay still elapses: the next step is planned from this one's due time.
            return _skip(claim, sequence, profile, now, f"{HOLDOUT_REASON} {assignment.experiment_key}")
        # A variant an edit removed is the step's own version (with_variant gives the step).
        step = step.with_variant(assignment.arm)
    if not in_window(sequence.window, profile.time_zone, now) and not _at_once(
            claim, enrollment, now):
        # Quiet hours hold even after an outage: wait for the subscriber's next window.
        return Outcome(claim.id, DeliveryStatus.QUEUED, now,
                       due_at=next_in_window(sequence.window, profile.time_zone, now),
                       error="outside send window")
    return _render(claim, content, sequence, step,
                   letterhead.links.for_subscriber(claim.subscriber.id), policy, letterhead, now)


def _at_once(claim: ClaimedDelivery, enrollment: EnrollmentSnapshot, now: datetime) -> bool:
    """An immediate first email, still within AT_ONCE_FOR of the confirmation that planned it."""
    return claim.immediate and now - enrollment.enrolled_at <= AT_ONCE_FOR


def _ended(claim: ClaimedDelivery, enrollment: EnrollmentSnapshot, now: datetime) -> Outcome | None:
    """A skip when the subscriber left, the address is suppressed or the enrollment is over."""
    subscriber = claim.subscriber
    if subscriber.status is not SubscriberStatus.ACTIVE:
        return Outcome(claim.id, DeliveryStatus.SKIPPED, now,
                       error=f"subscriber {subscriber.status.value}",
                       end_enrollment=EnrollmentStatus.EXITED, end_reason=subscriber.status.value)
    if claim.suppressed:
        return Outcome(claim.id, DeliveryStatus.SKIPPED, now, error="address suppressed",
                       end_enrollment=EnrollmentStatus.EXITED, end_reason="suppressed")
    if enrollment.status in (EnrollmentStatus.COMPLETED, EnrollmentStatus.EXITED):
        return Outcome(claim.id, DeliveryStatus.SKIPPED, now, error="enrollment ended")
    return None


def _paused(claim: ClaimedDelivery, enrollment: EnrollmentSnapshot, sequence: Sequence,
            profile: Profile, policy: DispatchPolicy, now: datetime) -> Outcome | None:
    """Held until the pause ends (or looked at again later, for a pause without an end), in
    the subscriber's send window; None when the enrollment is not paused, or its pause is over."""
    if enrollment.status is not EnrollmentStatus.PAUSED:
        return None
    until = enrollment.paused_until
    if until is not None and until <= now:
        return None
    resume = until if until is not None else now + policy.paused_recheck
    return Outcome(claim.id, DeliveryStatus.QUEUED, now,
                   due_at=next_in_window(sequence.window, profile.time_zone, resume), error="paused")


def _confirmation(claim: ClaimedDelivery, content: Content, policy: DispatchPolicy,
                  letterhead: Letterhead, now: datetime) -> Outcome | MessageToSend:
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
        return Outcome(claim.id, DeliveryStatus.QUEUED, now, due_at=now + LOOK_AGAIN,
                       error=f"no '{CONFIRM_STEP}' step in sequences/{SYSTEM_SEQUENCE}.yaml")
    maker = letterhead.links
    links = replace(maker.for_subscriber(subscriber.id), action_url=maker.confirm_url(subscriber.id))
    return _render(claim, content, system, step, links, policy, letterhead, now)


def _render(claim: ClaimedDelivery, content: Content, sequence: Sequence, step: Step, links: Links,
            policy: DispatchPolicy, letterhead: Letterhead,
            now: datetime) -> Outcome | MessageToSend:
    """Render and build the message; the caller sends it. A render error is the outcome."""
    subscriber = claim.subscriber
    profile = profile_of(claim)
    message_id = message_id_for(claim.id, letterhead.message_id_domain)
    try:
        rendered = content.library.render(
            sequence, step, Recipient(subscriber.email, subscriber.first_name, profile),
            links, letterhead.brand)
        if letterhead.count_clicks:
            rendered = count_clicks(rendered, library=content.library,
                                    base_url=letterhead.links.base_url,
                                    secret_key=letterhead.links.signer.secret_key,
                                    delivery_id=claim.id)
        parts = message_parts(rendered, to=subscriber.email, message_id=message_id,
                              links=links, date=now)
    except Exception as error:  # a render bug must not stop the batch; the row stays retryable
        log.exception("render failed", extra={"delivery": str(claim.id), "step": step.key})
        return _retry(claim, now, None, f"render error: {type(error).__name__}", content.version,
                      policy)
    message = OutgoingMessage(
        envelope_from=letterhead.envelope_from, recipients=(subscriber.email,),
        data=parts if isinstance(parts, bytes) else b"", message_id=message_id, at=now,
        parts=None if isinstance(parts, bytes) else parts)
    return MessageToSend(claim, sequence, profile, message, content.version)


def outcome_of_send(sent: MessageToSend, result: SendResult, policy: DispatchPolicy,
                    now: datetime) -> Outcome:
    """What the relay's reply makes of a message: sent (and the next step planned), bounced,
    deferred for a connection failure, or retried with backoff until the attempts run out; with
    the name of the relay that answered, where several are configured."""
    outcome = _answered(sent, result, policy, now)
    return replace(outcome, relay=result.relay) if result.relay is not None else outcome


def _answered(sent: MessageToSend, result: SendResult, policy: DispatchPolicy,
              now: datetime) -> Outcome:
    claim, message_id = sent.claim, sent.message.message_id
    if result.ok:
        return _sent(sent, result, now)
    if result.error_kind is SendErrorKind.PERMANENT:
        log.warning("hard bounce", extra={"delivery": str(claim.id), "code": result.code})
        return Outcome(claim.id, DeliveryStatus.BOUNCED, now, smtp_code=result.code,
                       error=result.message, message_id=message_id, count_attempt=True,
                       end_enrollment=EnrollmentStatus.EXITED if claim.enrollment else None,
                       end_reason="bounced" if claim.enrollment else None,
                       suppress_reason=f"hard bounce {result.code}")
    if result.error_kind is SendErrorKind.LIMITED:
        # Not tried: held, like a pause, until a relay's limit lets it go.
        return Outcome(claim.id, DeliveryStatus.QUEUED, now,
                       due_at=now + timedelta(seconds=result.retry_in or 60.0),
                       error=result.message)
    if result.error_kind is SendErrorKind.CONNECTION:
        log.warning("smtp connection failed", extra={"delivery": str(claim.id)})
        return Outcome(claim.id, DeliveryStatus.DEFERRED, now,
                       due_at=now + retry_delay(claim.id, 1, policy),
                       error="connection", smtp_code=result.code, count_attempt=False)
    return _retry(claim, now, result.code, result.message, sent.content_version, policy)


def _sent(sent: MessageToSend, result: SendResult, now: datetime) -> Outcome:
    """Sent: a sequence step queues the next one, or completes the enrollment after the last."""
    claim = sent.claim
    outcome = Outcome(claim.id, DeliveryStatus.SENT, now, smtp_code=result.code,
                      message_id=sent.message.message_id, content_version=sent.content_version,
                      count_attempt=True)
    return _planned_after(outcome, claim, sent.sequence, sent.profile)


def already_sent(claim: ClaimedDelivery, accepted: AcceptedSend, content: Content,
                 letterhead: Letterhead) -> Outcome:
    """A message a relay took under an earlier lease whose process died before recording it:
    recorded as sent at the relay's time, with the next step planned from then, and not sent
    again, whatever changed since (the person has it already)."""
    outcome = Outcome(claim.id, DeliveryStatus.SENT, accepted.at, smtp_code=accepted.smtp_code,
                      message_id=message_id_for(claim.id, letterhead.message_id_domain),
                      content_version=accepted.content_version, count_attempt=True,
                      relay=accepted.relay)
    enrollment = claim.enrollment
    sequence = content.sequences.get(enrollment.sequence_key) if enrollment else None
    if enrollment is not None and sequence is None:
        log.warning("sent step's sequence is gone: nothing planned after it",
                    extra={"delivery": str(claim.id), "sequence": enrollment.sequence_key})
        return outcome
    return _planned_after(outcome, claim, sequence, profile_of(claim))


def _planned_after(outcome: Outcome, claim: ClaimedDelivery, sequence: Sequence | None,
                   profile: Profile) -> Outcome:
    """A sent step's outcome with the next step queued, or the enrollment completed after the
    last; planned from the outcome's time."""
    if claim.enrollment is None or claim.step_key is None or sequence is None:
        return outcome
    done = claim.enrollment.done_step_keys | {claim.step_key}
    plan = plan_next(sequence, profile, done_step_keys=done, anchor=outcome.at)
    finished = plan.step is None
    return replace(outcome, next_delivery=plan.as_next_delivery(),
                   end_enrollment=EnrollmentStatus.COMPLETED if finished else None,
                   end_reason="finished" if finished else None)


def _retry(claim: ClaimedDelivery, now: datetime, code: int | None, error: str, version: str,
           policy: DispatchPolicy) -> Outcome:
    attempts = claim.attempts + 1
    if attempts >= policy.max_attempts:
        log.warning("delivery failed", extra={"delivery": str(claim.id), "code": code,
                                              "attempts": attempts})
        return Outcome(claim.id, DeliveryStatus.FAILED, now, smtp_code=code, error=error,
                       content_version=version, count_attempt=True)
    return Outcome(claim.id, DeliveryStatus.DEFERRED, now,
                   due_at=now + retry_delay(claim.id, attempts, policy),
                   smtp_code=code, error=error, content_version=version, count_attempt=True)


def _skip(claim: ClaimedDelivery, sequence: Sequence, profile: Profile, now: datetime,
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
