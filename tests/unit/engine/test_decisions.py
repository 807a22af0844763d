"""What the dispatcher does with one claimed delivery, decided without a store, a transport or a
clock: every branch of `decide` and `outcome_of_send`, on the sample content."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.policy import default
from typing import Any
from uuid import UUID, uuid4

import pytest

from nurture.content.library import Content, ContentHolder
from nurture.engine.decisions import (
    Letterhead,
    MessageToSend,
    decide,
    message_id_for,
    outcome_of_send,
    retry_delay,
    with_live,
)
from nurture.engine.policy import DispatchPolicy
from nurture.engine.ports import (
    ClaimedDelivery,
    DeliveryKind,
    DeliveryStatus,
    EnrollmentSnapshot,
    EnrollmentStatus,
    LiveState,
    NextDelivery,
    Outcome,
    SendErrorKind,
    SendResult,
    SubscriberSnapshot,
    SubscriberStatus,
)
from nurture.engine.tokens import LinkMaker, TokenSigner
from nurture.rendering.types import Brand
from tests.support.clock import T0
from tests.support.paths import ROOT

# A Monday, 10:00 in London (GMT in winter), inside the sample's 09:00-20:00 window.
POLICY = DispatchPolicy(retry_base=timedelta(minutes=1), retry_max=timedelta(hours=6),
                        max_attempts=4, paused_recheck=timedelta(days=1))
LETTERHEAD = Letterhead(
    brand=Brand(sender="Nurture <hello@nurture.test>", discreet_sender_name="Notes for you",
                postal_address="1 Test Street", base_url="https://nurture.test"),
    links=LinkMaker(base_url="https://nurture.test", signer=TokenSigner("x" * 32)),
    message_id_domain="nurture.test",
)
OK = SendResult(ok=True, code=250, message="2.0.0 queued")


@pytest.fixture(scope="module")
def content() -> Content:
    return ContentHolder(ROOT / "sequences", ROOT / "templates").current


def claim(*, kind: DeliveryKind = DeliveryKind.STEP, step_key: str | None = "welcome",
          status: SubscriberStatus = SubscriberStatus.ACTIVE,
          enrollment: EnrollmentStatus | None = EnrollmentStatus.ACTIVE,
          paused_until: datetime | None = None, sequence_key: str = "sample",
          done: frozenset[str] = frozenset(), hesitations: frozenset[str] = frozenset({"stigma"}),
          suppressed: bool = False, attempts: int = 0, unreadable: str | None = None,
          due_at: datetime = T0, delivery_id: UUID | None = None) -> ClaimedDelivery:
    subscriber = SubscriberSnapshot(id=UUID(int=7), email="asha@example.org", first_name="Asha",
                                    status=status, time_zone="Europe/London",
                                    hesitations=hesitations, discreet=False, locale="en")
    snapshot = None if enrollment is None else EnrollmentSnapshot(
        id=UUID(int=8), sequence_key=sequence_key, status=enrollment, paused_until=paused_until,
        enrolled_at=T0 - timedelta(days=1), done_step_keys=done, last_sent_at=None)
    return ClaimedDelivery(id=delivery_id or uuid4(), kind=kind, step_key=step_key, due_at=due_at,
                           attempts=attempts, subscriber=subscriber, enrollment=snapshot,
                           suppressed=suppressed, unreadable=unreadable)


def confirmation(**kwargs: Any) -> ClaimedDelivery:
    kwargs.setdefault("status", SubscriberStatus.PENDING)
    return claim(kind=DeliveryKind.CONFIRMATION, step_key=None, enrollment=None, **kwargs)


def outcome(decided: Outcome | MessageToSend) -> Outcome:
    assert isinstance(decided, Outcome), decided
    return decided


def to_send(decided: Outcome | MessageToSend) -> MessageToSend:
    assert isinstance(decided, MessageToSend), decided
    return decided


# -- before sending ------------------------------------------------------------------------------


def test_a_due_step_is_rendered_for_the_subscriber(content: Content) -> None:
    row = claim()
    ready = to_send(decide(row, content, POLICY, LETTERHEAD, T0))
    message = message_from_bytes(ready.message.wire(), policy=default)
    assert ready.claim is row and ready.sequence.key == "sample"
    assert ready.content_version == content.version
    assert ready.message.envelope_from == "hello@nurture.test"
    assert ready.message.recipients == ("asha@example.org",)
    assert ready.message.message_id == message_id_for(row.id, "nurture.test")
    assert message["Message-ID"] == ready.message.message_id
    assert message["Subject"] == "Asha, you are not alone in this"
    assert message["Date"] == "Mon, 02 Mar 2026 10:00:00 +0000", "dated by `now`, not a clock"
    assert message["List-Unsubscribe"].startswith("<https://nurture.test/u/")


def test_an_unreadable_subscriber_is_retried_never_sent_without_their_data(
        content: Content) -> None:
    row = claim(unreadable="data key k2 is missing", attempts=1)
    assert outcome(decide(row, content, POLICY, LETTERHEAD, T0)) == Outcome(
        row.id, DeliveryStatus.DEFERRED, T0, due_at=T0 + retry_delay(row.id, 2, POLICY),
        error="data key k2 is missing", content_version=content.version, count_attempt=True)


def test_an_unreadable_subscriber_fails_after_the_last_attempt(content: Content) -> None:
    row = claim(unreadable="data key k2 is missing", attempts=POLICY.max_attempts - 1)
    decided = outcome(decide(row, content, POLICY, LETTERHEAD, T0))
    assert (decided.status, decided.due_at, decided.count_attempt) == (
        DeliveryStatus.FAILED, None, True)


@pytest.mark.parametrize("kind", [DeliveryKind.TEST, DeliveryKind.STEP])
def test_a_kind_without_a_sender_is_skipped(content: Content, kind: DeliveryKind) -> None:
    # A STEP row without an enrollment has nothing to send either.
    row = claim(kind=kind, enrollment=None)
    assert outcome(decide(row, content, POLICY, LETTERHEAD, T0)) == Outcome(
        row.id, DeliveryStatus.SKIPPED, T0, error=f"no sender for {kind.value} emails in this version")


@pytest.mark.parametrize("status", [SubscriberStatus.UNSUBSCRIBED, SubscriberStatus.BOUNCED,
                                    SubscriberStatus.COMPLAINED, SubscriberStatus.ERASED,
                                    SubscriberStatus.PENDING])
def test_a_subscriber_who_is_not_active_ends_the_enrollment(content: Content,
                                                           status: SubscriberStatus) -> None:
    row = claim(status=status)
    assert outcome(decide(row, content, POLICY, LETTERHEAD, T0)) == Outcome(
        row.id, DeliveryStatus.SKIPPED, T0, error=f"subscriber {status.value}",
        end_enrollment=EnrollmentStatus.EXITED, end_reason=status.value)


def test_a_suppressed_address_ends_the_enrollment(content: Content) -> None:
    row = claim(suppressed=True)
    assert outcome(decide(row, content, POLICY, LETTERHEAD, T0)) == Outcome(
        row.id, DeliveryStatus.SKIPPED, T0, error="address suppressed",
        end_enrollment=EnrollmentStatus.EXITED, end_reason="suppressed")


@pytest.mark.parametrize("status", [EnrollmentStatus.COMPLETED, EnrollmentStatus.EXITED])
def test_an_ended_enrollment_skips_its_email(content: Content, status: EnrollmentStatus) -> None:
    row = claim(enrollment=status)
    assert outcome(decide(row, content, POLICY, LETTERHEAD, T0)) == Outcome(
        row.id, DeliveryStatus.SKIPPED, T0, error="enrollment ended")


def test_a_sequence_missing_from_the_content_holds_the_email_for_an_hour(content: Content) -> None:
    row = claim(sequence_key="renamed")
    assert outcome(decide(row, content, POLICY, LETTERHEAD, T0)) == Outcome(
        row.id, DeliveryStatus.QUEUED, T0, due_at=T0 + timedelta(hours=1),
        error="sequence 'renamed' is not in the content")


def test_a_pause_with_an_end_holds_the_email_until_then_inside_the_window(
        content: Content) -> None:
    # Until Wednesday 06:00 UTC: the window opens at 09:00 London time.
    row = claim(enrollment=EnrollmentStatus.PAUSED, paused_until=T0 + timedelta(hours=44))
    assert outcome(decide(row, content, POLICY, LETTERHEAD, T0)) == Outcome(
        row.id, DeliveryStatus.QUEUED, T0, due_at=datetime(2026, 3, 4, 9, 0, tzinfo=UTC),
        error="paused")


def test_a_pause_without_an_end_is_looked_at_again_later(content: Content) -> None:
    row = claim(enrollment=EnrollmentStatus.PAUSED)
    assert outcome(decide(row, content, POLICY, LETTERHEAD, T0)) == Outcome(
        row.id, DeliveryStatus.QUEUED, T0, due_at=T0 + POLICY.paused_recheck, error="paused")


def test_a_pause_that_is_over_lets_the_email_go(content: Content) -> None:
    row = claim(enrollment=EnrollmentStatus.PAUSED, paused_until=T0)
    assert to_send(decide(row, content, POLICY, LETTERHEAD, T0)).claim is row


def test_a_step_removed_from_the_content_is_skipped_and_the_next_one_planned(
        content: Content) -> None:
    row = claim(step_key="gone", done=frozenset({"welcome"}), due_at=T0 - timedelta(hours=1))
    decided = outcome(decide(row, content, POLICY, LETTERHEAD, T0))
    assert (decided.status, decided.error) == (DeliveryStatus.SKIPPED,
                                               "step removed from the content")
    # Planned from the skipped row's due time (which already held its delay), not from `now`.
    assert decided.next_delivery == NextDelivery("understanding",
                                                 T0 - timedelta(hours=1) + timedelta(days=2))
    assert decided.end_enrollment is None


def test_a_step_whose_condition_is_false_is_skipped(content: Content) -> None:
    row = claim(step_key="understanding", done=frozenset({"welcome"}), hesitations=frozenset())
    decided = outcome(decide(row, content, POLICY, LETTERHEAD, T0))
    assert (decided.status, decided.error) == (
        DeliveryStatus.SKIPPED, "condition not met: hesitations_any fear_of_blame,stigma")
    assert decided.next_delivery is not None and decided.next_delivery.step_key == "next-steps"


def test_skipping_the_last_step_completes_the_enrollment(content: Content) -> None:
    row = claim(step_key="gone", done=frozenset({"welcome", "understanding", "next-steps"}))
    decided = outcome(decide(row, content, POLICY, LETTERHEAD, T0))
    assert (decided.status, decided.next_delivery) == (DeliveryStatus.SKIPPED, None)
    assert (decided.end_enrollment, decided.end_reason) == (EnrollmentStatus.COMPLETED, "finished")


def test_outside_the_send_window_the_email_waits_for_the_next_one(content: Content) -> None:
    night = datetime(2026, 3, 2, 22, 30, tzinfo=UTC)
    row = claim(due_at=night)
    assert outcome(decide(row, content, POLICY, LETTERHEAD, night)) == Outcome(
        row.id, DeliveryStatus.QUEUED, night, due_at=datetime(2026, 3, 3, 9, 0, tzinfo=UTC),
        error="outside send window")


def test_the_consent_read_just_before_sending_is_the_one_that_counts(content: Content) -> None:
    row = claim()
    unchanged = LiveState(SubscriberStatus.ACTIVE, False, EnrollmentStatus.ACTIVE, None)
    assert with_live(row, unchanged) is row
    left = with_live(row, LiveState(SubscriberStatus.UNSUBSCRIBED, False,
                                    EnrollmentStatus.ACTIVE, None))
    assert outcome(decide(left, content, POLICY, LETTERHEAD, T0)).error == "subscriber unsubscribed"
    paused = with_live(row, LiveState(SubscriberStatus.ACTIVE, False, EnrollmentStatus.PAUSED,
                                      T0 + timedelta(days=1)))
    assert paused.enrollment is not None
    assert (paused.enrollment.status, paused.enrollment.paused_until) == (
        EnrollmentStatus.PAUSED, T0 + timedelta(days=1))
    assert outcome(decide(paused, content, POLICY, LETTERHEAD, T0)).error == "paused"
    suppressed = with_live(row, LiveState(SubscriberStatus.ACTIVE, True, None, None))
    assert suppressed.suppressed and suppressed.enrollment == row.enrollment


class BrokenLibrary:
    def render(self, *args: object) -> object:
        raise RuntimeError("a template bug")


def test_a_render_error_is_retried_and_does_not_raise(content: Content,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    broken = replace(content, library=BrokenLibrary())
    row = claim(attempts=2)
    assert outcome(decide(row, broken, POLICY, LETTERHEAD, T0)) == Outcome(
        row.id, DeliveryStatus.DEFERRED, T0, due_at=T0 + retry_delay(row.id, 3, POLICY),
        error="render error: RuntimeError", content_version=content.version, count_attempt=True)
    assert any(r.getMessage() == "render failed" for r in caplog.records)


# -- the confirmation email ----------------------------------------------------------------------


def test_a_pending_subscriber_gets_the_confirmation_at_any_hour(content: Content) -> None:
    night = datetime(2026, 3, 2, 3, 0, tzinfo=UTC)
    row = confirmation()
    ready = to_send(decide(row, content, POLICY, LETTERHEAD, night))
    assert ready.sequence.key == "system"
    body = message_from_bytes(ready.message.wire(), policy=default)
    assert body["Subject"] == "Please confirm your email address"
    assert b"https://nurture.test/confirm/" in ready.message.wire()


def test_a_sent_confirmation_queues_nothing(content: Content) -> None:
    row = confirmation()
    ready = to_send(decide(row, content, POLICY, LETTERHEAD, T0))
    assert outcome_of_send(ready, OK, POLICY, T0) == Outcome(
        row.id, DeliveryStatus.SENT, T0, smtp_code=250, message_id=ready.message.message_id,
        content_version=content.version, count_attempt=True)


@pytest.mark.parametrize("status", [SubscriberStatus.ACTIVE, SubscriberStatus.UNSUBSCRIBED])
def test_the_confirmation_goes_only_to_a_pending_subscriber(content: Content,
                                                            status: SubscriberStatus) -> None:
    row = confirmation(status=status)
    assert outcome(decide(row, content, POLICY, LETTERHEAD, T0)) == Outcome(
        row.id, DeliveryStatus.SKIPPED, T0, error=f"subscriber {status.value}, not pending")


def test_the_confirmation_is_not_sent_to_a_suppressed_address(content: Content) -> None:
    row = confirmation(suppressed=True)
    assert outcome(decide(row, content, POLICY, LETTERHEAD, T0)) == Outcome(
        row.id, DeliveryStatus.SKIPPED, T0, error="address suppressed")


def test_without_a_confirm_step_the_confirmation_waits(content: Content) -> None:
    without = replace(content, sequences={k: v for k, v in content.sequences.items()
                                          if k != "system"})
    row = confirmation()
    assert outcome(decide(row, without, POLICY, LETTERHEAD, T0)) == Outcome(
        row.id, DeliveryStatus.QUEUED, T0, due_at=T0 + timedelta(hours=1),
        error="no 'confirm' step in sequences/system.yaml")


# -- after the relay's reply ---------------------------------------------------------------------


def test_a_sent_step_queues_the_next_one(content: Content) -> None:
    row = claim()
    ready = to_send(decide(row, content, POLICY, LETTERHEAD, T0))
    assert outcome_of_send(ready, OK, POLICY, T0) == Outcome(
        row.id, DeliveryStatus.SENT, T0, smtp_code=250, message_id=ready.message.message_id,
        content_version=content.version, count_attempt=True,
        next_delivery=NextDelivery("understanding", T0 + timedelta(days=2)))


def test_the_last_step_sent_completes_the_enrollment(content: Content) -> None:
    row = claim(step_key="next-steps", done=frozenset({"welcome", "understanding"}))
    ready = to_send(decide(row, content, POLICY, LETTERHEAD, T0))
    decided = outcome_of_send(ready, OK, POLICY, T0)
    assert (decided.status, decided.next_delivery) == (DeliveryStatus.SENT, None)
    assert (decided.end_enrollment, decided.end_reason) == (EnrollmentStatus.COMPLETED, "finished")


def test_a_permanent_refusal_bounces_suppresses_and_ends_the_enrollment(content: Content) -> None:
    row = claim()
    ready = to_send(decide(row, content, POLICY, LETTERHEAD, T0))
    refused = SendResult(ok=False, code=550, message="5.1.1 no such user",
                         error_kind=SendErrorKind.PERMANENT)
    assert outcome_of_send(ready, refused, POLICY, T0) == Outcome(
        row.id, DeliveryStatus.BOUNCED, T0, smtp_code=550, error="5.1.1 no such user",
        message_id=ready.message.message_id, count_attempt=True,
        end_enrollment=EnrollmentStatus.EXITED, end_reason="bounced",
        suppress_reason="hard bounce 550")


def test_a_bounced_confirmation_suppresses_without_an_enrollment_to_end(content: Content) -> None:
    ready = to_send(decide(confirmation(), content, POLICY, LETTERHEAD, T0))
    refused = SendResult(ok=False, code=550, message="no", error_kind=SendErrorKind.PERMANENT)
    decided = outcome_of_send(ready, refused, POLICY, T0)
    assert (decided.status, decided.end_enrollment, decided.end_reason, decided.suppress_reason) == (
        DeliveryStatus.BOUNCED, None, None, "hard bounce 550")


def test_a_connection_failure_defers_without_counting_an_attempt(content: Content) -> None:
    row = claim(attempts=5)
    ready = to_send(decide(row, content, POLICY, LETTERHEAD, T0))
    dropped = SendResult(ok=False, code=None, message="refused",
                         error_kind=SendErrorKind.CONNECTION)
    assert outcome_of_send(ready, dropped, POLICY, T0) == Outcome(
        row.id, DeliveryStatus.DEFERRED, T0, due_at=T0 + retry_delay(row.id, 1, POLICY),
        error="connection", count_attempt=False)


@pytest.mark.parametrize("attempts", [0, 1, 2])
def test_a_temporary_failure_is_retried_with_backoff(content: Content, attempts: int) -> None:
    row = claim(attempts=attempts)
    ready = to_send(decide(row, content, POLICY, LETTERHEAD, T0))
    busy = SendResult(ok=False, code=451, message="4.3.0 try later",
                      error_kind=SendErrorKind.TEMPORARY)
    assert outcome_of_send(ready, busy, POLICY, T0) == Outcome(
        row.id, DeliveryStatus.DEFERRED, T0, due_at=T0 + retry_delay(row.id, attempts + 1, POLICY),
        smtp_code=451, error="4.3.0 try later", content_version=content.version,
        count_attempt=True)


def test_a_temporary_failure_on_the_last_attempt_fails(content: Content) -> None:
    row = claim(attempts=POLICY.max_attempts - 1)
    ready = to_send(decide(row, content, POLICY, LETTERHEAD, T0))
    busy = SendResult(ok=False, code=452, message="4.3.1 full",
                      error_kind=SendErrorKind.TEMPORARY)
    assert outcome_of_send(ready, busy, POLICY, T0) == Outcome(
        row.id, DeliveryStatus.FAILED, T0, smtp_code=452, error="4.3.1 full",
        content_version=content.version, count_attempt=True)


# -- backoff and Message-IDs ---------------------------------------------------------------------


def test_the_backoff_doubles_with_jitter_up_to_the_cap() -> None:
    for delivery_id in (UUID(int=n) for n in range(50)):
        delays = [retry_delay(delivery_id, attempts, POLICY) for attempts in range(1, 16)]
        for attempts, delay in enumerate(delays, start=1):
            exponential = POLICY.retry_base * 2 ** (attempts - 1)
            assert min(exponential, POLICY.retry_max) <= delay
            assert delay <= min(exponential * 1.25, POLICY.retry_max)
        assert delays == sorted(delays)
        assert delays[-1] == POLICY.retry_max
    assert retry_delay(UUID(int=1), 0, POLICY) == retry_delay(UUID(int=1), 1, POLICY)
    assert retry_delay(UUID(int=1), 3, POLICY) == retry_delay(UUID(int=1), 3, POLICY), "repeatable"


def test_a_message_id_names_the_delivery_and_is_the_same_on_every_attempt() -> None:
    delivery_id = UUID("5f0c0a4e-8d3b-4c1f-a1e2-d3c4b5a69788")
    assert message_id_for(delivery_id, "nurture.test") == \
        "<5f0c0a4e8d3b4c1fa1e2d3c4b5a69788@nurture.test>"
