"""The dispatcher's run loop on the in-memory store, with a transport in this process: it claims,
sends, records and queues the next step, honours a stop, releases what it did not send and backs
off on errors. What it decides for each delivery is tested on its own in test_decisions.py."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest

from nurture.content.library import ContentHolder
from nurture.domain.people import make_person
from nurture.engine.decisions import message_id_for, retry_delay
from nurture.engine.dispatcher import Dispatcher
from nurture.engine.enrollment import enroll
from nurture.engine.policy import DispatchPolicy
from nurture.engine.ports import (
    ConsentRecord,
    DeliveryStatus,
    EnrollmentStatus,
    OutgoingMessage,
    SendErrorKind,
    SendResult,
    SubscriberStatus,
)
from nurture.engine.throttle import CircuitBreaker, Throttle
from nurture.store.memory.store import MemoryStore
from tests.support.clock import T0
from tests.support.dispatchers import DOMAIN, make_dispatcher
from tests.support.paths import ROOT

# A Monday, 10:00 in London (GMT in winter), inside the sample's 09:00-20:00 window.
ACCEPTED = SendResult(ok=True, code=250, message="2.0.0 queued")
TRY_LATER = SendResult(ok=False, code=451, message="4.3.0 try again later",
                       error_kind=SendErrorKind.TEMPORARY)
NO_SUCH_USER = SendResult(ok=False, code=550, message="5.1.1 no such user",
                          error_kind=SendErrorKind.PERMANENT)
UNREACHABLE = SendResult(ok=False, code=None, message="connection refused",
                         error_kind=SendErrorKind.CONNECTION)


class RecordingTransport:
    """The Transport port in this process: it keeps each message and answers 250, unless a reply
    is scripted for the next sends or for an address; a hook may run just before each send (while
    the relay would be busy with it). The dispatcher sends through it on a thread of its own."""

    def __init__(self) -> None:
        self.sent: list[OutgoingMessage] = []
        self.next_replies: deque[SendResult] = deque()
        self.replies: dict[str, deque[SendResult]] = {}
        self.before_send: Callable[[OutgoingMessage], None] | None = None
        self.closed = False

    def answer(self, email: str, *replies: SendResult) -> None:
        self.replies.setdefault(email, deque()).extend(replies)

    def send(self, message: OutgoingMessage) -> SendResult:
        if self.before_send is not None:
            self.before_send(message)
        self.sent.append(message)
        if self.next_replies:
            return self.next_replies.popleft()
        waiting = self.replies.get(message.recipients[0])
        return waiting.popleft() if waiting else ACCEPTED

    def close(self) -> None:
        self.closed = True

    def recipients(self) -> list[str]:
        return [message.recipients[0] for message in self.sent]


@pytest.fixture(scope="module")
def content() -> ContentHolder:
    return ContentHolder(ROOT / "sequences", ROOT / "templates")


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
def relay() -> RecordingTransport:
    return RecordingTransport()


def enroll_people(store: MemoryStore, content: ContentHolder, count: int,
                  hesitations: tuple[str, ...] = ("stigma",)) -> list[str]:
    emails = [f"p{index}@example.org" for index in range(count)]
    people = [make_person(email, "Asha", "Europe/London", hesitations) for email in emails]
    results = enroll(store, content.current, people, "sample",
                     ConsentRecord(kind="operator", source="test"), T0)
    assert all(result.created for result in results)
    return emails


def welcome(store: MemoryStore, email: str) -> Any:
    (row,) = [d for d in store.deliveries_for(email) if d.step_key == "welcome"]
    return row


def dispatcher_on(store: MemoryStore, content: ContentHolder, relay: RecordingTransport,
                  **policy: Any) -> Dispatcher:
    return make_dispatcher(store, content, relay, **policy)


# -- a run -----------------------------------------------------------------------------------------


def test_a_run_claims_sends_records_and_queues_the_next_step(
        store: MemoryStore, content: ContentHolder, relay: RecordingTransport) -> None:
    emails = enroll_people(store, content, 5)
    dispatcher = dispatcher_on(store, content, relay, batch_size=2)

    report = dispatcher.run(T0)

    assert report.as_dict() == {"claimed": 5, "sent": 5, "skipped": 0, "held": 0, "deferred": 0,
                                "failed": 0, "bounced": 0, "released": 0, "lease_lost": 0}
    assert sorted(relay.recipients()) == emails
    for email in emails:
        deliveries = {d.step_key: d for d in store.deliveries_for(email)}
        sent = deliveries["welcome"]
        assert (sent.status, sent.attempts, sent.smtp_code) == (DeliveryStatus.SENT, 1, 250)
        assert sent.message_id == message_id_for(sent.id, DOMAIN)
        assert sent.lease_owner is None
        assert sent.sent_at is not None and timedelta(0) <= sent.sent_at - T0 < timedelta(seconds=5)
        queued = deliveries["understanding"]
        assert queued.status is DeliveryStatus.QUEUED
        # Planned from its claim's time: T0 for the first claim, a moment later for the next.
        assert timedelta(0) <= queued.due_at - (T0 + timedelta(days=2)) < timedelta(seconds=5)
    assert store.counts_by_status()["sending"] == 0
    assert dispatcher.run(T0).claimed == 0, "nothing more is due at the same instant"
    assert not relay.closed, "the transport belongs to whoever made it"


def test_the_whole_sequence_goes_out_in_order_and_the_enrollment_completes(
        store: MemoryStore, content: ContentHolder, relay: RecordingTransport) -> None:
    (email,) = enroll_people(store, content, 1)
    dispatcher = dispatcher_on(store, content, relay)
    for day in (0, 2, 5):
        assert dispatcher.run(T0 + timedelta(days=day)).sent == 1
    assert dispatcher.run(T0 + timedelta(days=60)).claimed == 0
    assert [m.message_id for m in relay.sent] == [
        message_id_for(d.id, DOMAIN) for d in sorted(store.deliveries_for(email),
                                                      key=lambda d: d.due_at)]
    (enrollment,) = store.enrollments_for(email)
    assert (enrollment.status, enrollment.end_reason) == (EnrollmentStatus.COMPLETED, "finished")


def test_a_step_whose_condition_is_false_is_skipped_and_the_next_one_queued(
        store: MemoryStore, content: ContentHolder, relay: RecordingTransport) -> None:
    (email,) = enroll_people(store, content, 1, hesitations=())
    dispatcher = dispatcher_on(store, content, relay)
    dispatcher.run(T0)
    statuses = {d.step_key: d.status for d in store.deliveries_for(email)}
    # "understanding" is only for the stigma or blame hesitations: passed over at planning.
    assert statuses == {"welcome": DeliveryStatus.SENT, "understanding": DeliveryStatus.SKIPPED,
                        "next-steps": DeliveryStatus.QUEUED}


# -- consent read again before sending -------------------------------------------------------------


def test_an_unsubscribe_during_the_batch_is_seen_before_the_next_send(
        store: MemoryStore, content: ContentHolder, relay: RecordingTransport) -> None:
    emails = enroll_people(store, content, 4)
    # The last of the batch (claims go in due time, then id order): when the first message goes
    # out, the one behind it may already be handed over, never the last.
    leaving = max(emails, key=lambda email: welcome(store, email).id)

    def unsubscribe_during_the_first_send(message: OutgoingMessage) -> None:
        if len(relay.sent) == 0:
            store.set_subscriber_status(leaving, SubscriberStatus.UNSUBSCRIBED)

    relay.before_send = unsubscribe_during_the_first_send
    # 0: the rows are read again before each message is handed over.
    report = dispatcher_on(store, content, relay, recheck_interval=timedelta(0)).run(T0)

    assert (report.claimed, report.sent, report.skipped) == (4, 3, 1)
    assert leaving not in relay.recipients()
    skipped = welcome(store, leaving)
    assert (skipped.status, skipped.skip_reason) == (DeliveryStatus.SKIPPED,
                                                     "subscriber unsubscribed")
    (enrollment,) = store.enrollments_for(leaving)
    assert enrollment.status is EnrollmentStatus.EXITED


class TakenOverStore:
    """The memory store, where another process takes over the last two rows of the batch just
    before the second re-check (their lease given up, then claimed by "rival")."""

    def __init__(self, store: MemoryStore) -> None:
        self._store = store
        self.rechecks = 0
        self.taken: list[Any] = []

    def recheck(self, delivery_ids: Any, *, owner: str, now: datetime, lease: timedelta) -> Any:
        self.rechecks += 1
        if self.rechecks == 2:
            self._store.release(delivery_ids[-2:], owner=owner)
            self.taken = self._store.claim_due(now=now, owner="rival", limit=10, lease=lease)
        return self._store.recheck(delivery_ids, owner=owner, now=now, lease=lease)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def test_rows_another_process_took_over_are_not_sent(
        store: MemoryStore, content: ContentHolder, relay: RecordingTransport) -> None:
    enroll_people(store, content, 4)
    taken_over = TakenOverStore(store)
    # 0: the rows are read again before each message is handed over.
    dispatcher = make_dispatcher(taken_over, content, relay, recheck_interval=timedelta(0))

    report = dispatcher.run(T0)

    assert len(taken_over.taken) == 2
    assert (report.claimed, report.sent, report.lease_lost, report.released) == (4, 2, 2, 0)
    sent_to = set(relay.recipients())
    assert len(sent_to) == 2
    assert not sent_to & {row.subscriber.email for row in taken_over.taken}
    assert store.counts_by_status()["sending"] == 2, "the rival's leases stand"
    assert all(store.delivery(row.id).lease_owner == "rival"  # type: ignore[union-attr]
               for row in taken_over.taken)


# -- stopping and releasing ----------------------------------------------------------------------


def test_a_stop_before_the_run_claims_nothing(
        store: MemoryStore, content: ContentHolder, relay: RecordingTransport) -> None:
    enroll_people(store, content, 2)
    dispatcher = dispatcher_on(store, content, relay)
    dispatcher.request_stop()
    assert dispatcher.run(T0).claimed == 0
    assert relay.sent == [] and store.counts_by_status()["queued"] == 2


def test_a_stop_during_a_send_hears_it_out_and_releases_the_rest(
        store: MemoryStore, content: ContentHolder, relay: RecordingTransport) -> None:
    emails = enroll_people(store, content, 4)
    dispatcher = dispatcher_on(store, content, relay)
    relay.before_send = lambda message: dispatcher.request_stop()

    report = dispatcher.run(T0)

    assert (report.claimed, report.sent, report.released) == (4, 1, 3)
    assert len(relay.sent) == 1
    statuses = sorted(welcome(store, email).status.value for email in emails)
    assert statuses == ["queued", "queued", "queued", "sent"]
    assert all(welcome(store, email).lease_owner is None for email in emails)


def test_an_unreachable_relay_defers_one_and_releases_the_rest(
        store: MemoryStore, content: ContentHolder, relay: RecordingTransport) -> None:
    emails = enroll_people(store, content, 3)
    relay.next_replies.append(UNREACHABLE)

    report = dispatcher_on(store, content, relay).run(T0)

    assert (report.sent, report.deferred, report.released) == (0, 1, 2)
    (tried,) = relay.recipients()
    first = welcome(store, tried)
    assert (first.status, first.attempts, first.last_error) == (DeliveryStatus.DEFERRED, 0,
                                                                 "connection")
    assert first.due_at == T0 + retry_delay(first.id, 1, DispatchPolicy())
    assert [welcome(store, e).status for e in emails if e != tried] == [DeliveryStatus.QUEUED] * 2
    assert all(welcome(store, e).lease_owner is None for e in emails)


def test_an_open_breaker_claims_nothing_until_its_cooldown_passes(
        store: MemoryStore, content: ContentHolder, relay: RecordingTransport) -> None:
    enroll_people(store, content, 2)
    relay.next_replies.append(UNREACHABLE)
    clock = [0.0]
    dispatcher = dispatcher_on(store, content, relay)
    dispatcher.throttle = Throttle(breaker=CircuitBreaker(failures=1, cooldown=60,
                                                          clock=lambda: clock[0]))
    assert dispatcher.run(T0).deferred == 1
    assert dispatcher.run(T0 + timedelta(minutes=5)).claimed == 0, "the breaker is open"
    clock[0] += 60
    assert dispatcher.run(T0 + timedelta(minutes=5)).sent == 2


# -- errors and backoff ----------------------------------------------------------------------------


def test_a_temporary_failure_backs_off_then_delivers(
        store: MemoryStore, content: ContentHolder, relay: RecordingTransport) -> None:
    (email,) = enroll_people(store, content, 1)
    relay.answer(email, TRY_LATER, TRY_LATER)
    dispatcher = dispatcher_on(store, content, relay, retry_base=timedelta(minutes=1))
    row = welcome(store, email)
    first_retry = T0 + retry_delay(row.id, 1, dispatcher.policy)

    assert dispatcher.run(T0).deferred == 1
    assert (welcome(store, email).due_at, welcome(store, email).attempts) == (first_retry, 1)
    assert dispatcher.run(first_retry - timedelta(seconds=1)).claimed == 0, "not before the backoff"
    assert dispatcher.run(first_retry).deferred == 1
    second_retry = first_retry + retry_delay(row.id, 2, dispatcher.policy)
    assert welcome(store, email).due_at == second_retry
    assert dispatcher.run(second_retry).sent == 1
    done = welcome(store, email)
    assert (done.status, done.attempts) == (DeliveryStatus.SENT, 3)
    assert len(relay.sent) == 3 and len({m.message_id for m in relay.sent}) == 1


def test_temporary_failures_end_as_failed_after_the_last_attempt(
        store: MemoryStore, content: ContentHolder, relay: RecordingTransport) -> None:
    (email,) = enroll_people(store, content, 1)
    relay.answer(email, *[TRY_LATER] * 3)
    dispatcher = dispatcher_on(store, content, relay, max_attempts=3)
    now = T0
    for _ in range(3):
        dispatcher.run(now)
        now = welcome(store, email).due_at
    failed = welcome(store, email)
    assert (failed.status, failed.attempts, failed.smtp_code) == (DeliveryStatus.FAILED, 3, 451)
    assert dispatcher.run(now + timedelta(days=1)).claimed == 0


def test_a_permanent_refusal_bounces_and_suppresses_only_that_address(
        store: MemoryStore, content: ContentHolder, relay: RecordingTransport) -> None:
    emails = enroll_people(store, content, 3)
    relay.answer(emails[1], NO_SUCH_USER)

    report = dispatcher_on(store, content, relay).run(T0)

    assert (report.sent, report.bounced) == (2, 1)
    assert [store.is_suppressed(email) for email in emails] == [False, True, False]
    assert store.subscriber_status(emails[1]) is SubscriberStatus.BOUNCED
    (enrollment,) = store.enrollments_for(emails[1])
    assert (enrollment.status, enrollment.end_reason) == (EnrollmentStatus.EXITED, "bounced")
    assert {d.step_key for d in store.deliveries_for(emails[1])} == {"welcome"}


class FlakyStore:
    """The memory store, with `record` failing a few times first (a database failing over)."""

    def __init__(self, store: MemoryStore, failures: int) -> None:
        self._store = store
        self.failures = failures

    def record(self, outcomes: Any, *, owner: str) -> None:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("server closed the connection unexpectedly")
        self._store.record(outcomes, owner=owner)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def test_a_failing_record_is_retried_with_backoff(
        store: MemoryStore, content: ContentHolder, relay: RecordingTransport) -> None:
    enroll_people(store, content, 2)
    dispatcher = make_dispatcher(FlakyStore(store, failures=3), content, relay)
    naps: list[float] = []
    dispatcher.sleep = naps.append
    dispatcher.monotonic = lambda: 0.0

    assert dispatcher.run(T0).sent == 2
    assert naps == [0.1, 0.2, 0.4]
    assert store.counts_by_status()["sent"] == 2


def test_a_record_that_keeps_failing_raises_and_leaves_nothing_leased_twice(
        store: MemoryStore, content: ContentHolder, relay: RecordingTransport) -> None:
    enroll_people(store, content, 2)
    dispatcher = make_dispatcher(FlakyStore(store, failures=1000), content, relay,
                                 store_retry=timedelta(seconds=1))
    seconds = [0.0]

    def sleep(delay: float) -> None:
        seconds[0] += delay

    dispatcher.sleep = sleep
    dispatcher.monotonic = lambda: seconds[0]
    with pytest.raises(ConnectionError):
        dispatcher.run(T0)
    assert len(relay.sent) == 2
    # Unrecorded sends keep their lease: they come back after it, with the same Message-ID.
    assert store.counts_by_status()["sending"] == 2
