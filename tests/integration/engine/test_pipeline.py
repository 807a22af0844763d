"""End to end on SQLite and PostgreSQL: enroll, dispatch through time, real SMTP, messages parsed back."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default
from typing import Any, cast

import pytest
from sqlalchemy import update

from nurture.content.library import ContentHolder
from nurture.domain.people import make_person
from nurture.engine.decisions import message_id_for
from nurture.engine.dispatcher import Dispatcher
from nurture.engine.enrollment import enroll
from nurture.engine.pacing import SEND_AHEAD_LIMIT
from nurture.engine.ports import ConsentRecord, Transport
from nurture.setting_values import parse_smtp_url
from nurture.smtp.relay_process import ProcessTransport
from nurture.smtp.transports import SmtpTransport
from nurture.store.models import Subscriber
from nurture.store.sql.store import SqlStore
from tests.support.clock import T0
from tests.support.dispatchers import POSTAL, make_dispatcher
from tests.support.paths import ROOT

# A Monday, 10:00 in London (GMT in winter), inside the sample's 09:00-20:00 window.


@pytest.fixture
def content() -> ContentHolder:
    return ContentHolder(ROOT / "sequences", ROOT / "templates")


@pytest.fixture(params=["thread", "process"])
def dispatcher(request: pytest.FixtureRequest, store: SqlStore, content: ContentHolder,
               smtp_server: Any) -> Iterator[Dispatcher]:
    """A dispatcher sending on a thread of its own, or (as the scheduler does) through the relay
    process."""
    endpoint = parse_smtp_url(f"smtp://127.0.0.1:{smtp_server.port}")
    transport: Transport = (SmtpTransport(endpoint, timeout=5) if request.param == "thread"
                            else ProcessTransport(endpoint, timeout=5))
    yield make_dispatcher(store, content, transport, batch_size=50)
    transport.close()


def _enroll(store: SqlStore, content: ContentHolder, email: str, *, hesitations: tuple[str, ...],
            time_zone: str = "Europe/London", now: datetime = T0, first_name: str | None = "Asha",
            discreet: bool = False) -> None:
    person = make_person(email, first_name, time_zone, hesitations, discreet)
    results = enroll(store, content.current, [person], "sample",
                     ConsentRecord(kind="operator", source="test"), now)
    assert results[0].created, results[0].reason


def _parts(message: EmailMessage) -> tuple[str, str]:
    assert message.get_content_type() == "multipart/alternative"
    text_part = message.get_body(("plain",))
    html_part = message.get_body(("html",))
    assert text_part is not None and html_part is not None
    return cast(str, text_part.get_content()), cast(str, html_part.get_content())


def test_sequence_arrives_in_order_at_the_right_times(store: SqlStore, content: ContentHolder,
                                                      dispatcher: Dispatcher,
                                                      smtp_server: Any) -> None:
    _enroll(store, content, "asha@example.org", hesitations=("stigma",))

    assert dispatcher.run(T0 - timedelta(minutes=1)).sent == 0
    assert dispatcher.run(T0).sent == 1
    assert dispatcher.run(T0).sent == 0, "a second dispatch at the same instant sends nothing"
    assert dispatcher.run(T0 + timedelta(days=2) - timedelta(seconds=1)).sent == 0
    assert dispatcher.run(T0 + timedelta(days=2)).sent == 1
    assert dispatcher.run(T0 + timedelta(days=5) - timedelta(seconds=1)).sent == 0
    assert dispatcher.run(T0 + timedelta(days=5)).sent == 1
    assert dispatcher.run(T0 + timedelta(days=60)).claimed == 0

    received = smtp_server.messages
    assert len(received) == 3
    subjects = [m.message["Subject"] for m in received]
    assert subjects == ["Asha, you are not alone in this",
                        "Why asking for help can feel risky to them",
                        "One small step you can take this week"]
    for item in received:
        message = item.message
        assert item.recipients == ("asha@example.org",)
        assert message["To"] == "asha@example.org"
        assert message["From"] == "Nurture <hello@nurture.test>"
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        unsubscribe = message["List-Unsubscribe"]
        assert unsubscribe.startswith("<https://nurture.test/u/")
        assert "<mailto:unsubscribe@nurture.test" in unsubscribe
        assert message["Message-ID"].endswith("@nurture.test>")
        text, html = _parts(message)
        for part in (text, html):
            assert POSTAL in part
            assert "https://nurture.test/u/" in part
            assert "https://nurture.test/p/" in part
            assert "emergency" in part.lower()
        assert "<style" not in html.split("<body", 1)[-1], "CSS is inlined into the body"
        assert 'style="' in html

    deliveries = store.deliveries_for("asha@example.org")
    by_step = {d.step_key: d for d in deliveries}
    assert [by_step[k].status.value for k in ("welcome", "understanding", "next-steps")] == \
        ["sent", "sent", "sent"]
    for delivery, item in zip((by_step["welcome"], by_step["understanding"],
                               by_step["next-steps"]), received, strict=True):
        assert item.message["Message-ID"] == message_id_for(delivery.id, "nurture.test")


def test_conditional_step_is_skipped_with_its_reason(store: SqlStore, content: ContentHolder,
                                                     dispatcher: Dispatcher,
                                                     smtp_server: Any) -> None:
    _enroll(store, content, "ben@example.org", hesitations=("vulnerability",), first_name=None)
    assert dispatcher.run(T0).sent == 1
    # The skipped step's two days still elapse: next-steps is due five days after the welcome.
    assert dispatcher.run(T0 + timedelta(days=5) - timedelta(seconds=1)).sent == 0
    assert dispatcher.run(T0 + timedelta(days=5)).sent == 1
    subjects = [m.message["Subject"] for m in smtp_server.messages]
    assert subjects == ["You are not alone in this", "One small step you can take this week"]
    skipped = [d for d in store.deliveries_for("ben@example.org") if d.step_key == "understanding"]
    assert skipped[0].status.value == "skipped"
    assert "condition not met" in (skipped[0].skip_reason or "")


def test_send_window_in_the_subscribers_time_zone(store: SqlStore, content: ContentHolder,
                                                  dispatcher: Dispatcher, smtp_server: Any) -> None:
    # 20:30 in Kolkata (UTC+05:30) is after the 09:00-20:00 window: the welcome waits for 09:00.
    enrolled_at = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
    _enroll(store, content, "chitra@example.org", hesitations=("stigma",),
            time_zone="Asia/Kolkata", now=enrolled_at)
    assert dispatcher.run(enrolled_at).sent == 0
    next_morning = datetime(2026, 3, 3, 3, 30, tzinfo=UTC)  # 09:00 IST
    assert dispatcher.run(next_morning - timedelta(seconds=1)).sent == 0
    assert dispatcher.run(next_morning).sent == 1


def test_discreet_mode_uses_neutral_subject_and_sender(store: SqlStore, content: ContentHolder,
                                                       dispatcher: Dispatcher,
                                                       smtp_server: Any) -> None:
    _enroll(store, content, "dev@example.org", hesitations=("stigma",), discreet=True)
    assert dispatcher.run(T0).sent == 1
    message = smtp_server.messages[0].message
    assert message["Subject"] == "Your notes have started"
    assert message["From"] == "Notes for you <hello@nurture.test>"


def test_stopped_relay_leaves_everything_queued(store: SqlStore, content: ContentHolder,
                                                dispatcher: Dispatcher, smtp_server: Any) -> None:
    for index in range(3):
        _enroll(store, content, f"p{index}@example.org", hesitations=("stigma",))
    smtp_server.stop()
    report = dispatcher.run(T0)
    assert report.sent == 0 and report.deferred == 1 and report.released == 2
    statuses = [d.status.value for i in range(3) for d in store.deliveries_for(f"p{i}@example.org")]
    assert sorted(statuses) == ["deferred", "queued", "queued"]
    smtp_server.start()
    assert dispatcher.run(T0 + timedelta(hours=1)).sent == 3


def test_unsubscribed_person_gets_nothing_more(store: SqlStore, content: ContentHolder,
                                               dispatcher: Dispatcher, smtp_server: Any) -> None:
    _enroll(store, content, "eve@example.org", hesitations=("stigma",))
    assert dispatcher.run(T0).sent == 1
    # Only the subscriber row changes, as when an unsubscribe lands between two sends: the queued
    # row is still there, and the dispatcher must notice at send time.
    with store.engine.begin() as connection:
        connection.execute(update(Subscriber).where(Subscriber.email == "eve@example.org")
                           .values(status="unsubscribed"))
    report = dispatcher.run(T0 + timedelta(days=30))
    assert report.sent == 0 and report.skipped == 1
    assert len(smtp_server.messages) == 1


def test_parsed_message_round_trip_is_standard(store: SqlStore, content: ContentHolder,
                                               dispatcher: Dispatcher, smtp_server: Any) -> None:
    _enroll(store, content, "fay@example.org", hesitations=("stigma",),
            first_name="Fay <b>&\"'")
    dispatcher.run(T0)
    raw = smtp_server.messages[0].data
    assert b"\r\n" in raw
    message = cast(EmailMessage, message_from_bytes(raw, policy=default))
    text, html = _parts(message)
    assert "Fay <b>&\"'" in text
    assert "Fay &lt;b&gt;&amp;" in html
    assert "<b>&" not in html


class SlowRelay:
    """The real transport, with a clock that each send moves on by two seconds."""

    def __init__(self, transport: Transport, ticks: list[float],
                 on_send: Any = None) -> None:
        self._transport, self._ticks, self._on_send = transport, ticks, on_send
        self.sent = 0

    def send(self, message: Any) -> Any:
        self._ticks[0] += 2.0
        self.sent += 1
        if self._on_send is not None:
            self._on_send(self.sent)
        return self._transport.send(message)

    def close(self) -> None:
        self._transport.close()


def test_each_sent_at_is_when_the_relay_answered_and_plans_count_from_the_tick(
        store: SqlStore, content: ContentHolder, dispatcher: Dispatcher) -> None:
    emails = [f"p{index}@example.org" for index in range(4)]
    for email in emails:
        _enroll(store, content, email, hesitations=("stigma",))
    ticks = [0.0]
    dispatcher.transport = SlowRelay(dispatcher.transport, ticks)
    dispatcher.monotonic = lambda: ticks[0]

    assert dispatcher.run(T0).sent == 4

    welcomes = [d for email in emails for d in store.deliveries_for(email) if d.step_key == "welcome"]
    assert sorted(d.sent_at for d in welcomes if d.sent_at) == [
        T0 + timedelta(seconds=2 * n) for n in range(1, 5)]
    # The next step is due two days after the tick, not after each reply.
    nexts = [d for email in emails for d in store.deliveries_for(email) if d.step_key != "welcome"]
    assert {d.due_at for d in nexts} == {T0 + timedelta(days=2)}


def test_a_stop_during_a_send_sends_nothing_more_and_releases_the_rest(
        store: SqlStore, content: ContentHolder, dispatcher: Dispatcher, smtp_server: Any) -> None:
    for index in range(6):
        _enroll(store, content, f"p{index}@example.org", hesitations=("stigma",))
    relay = SlowRelay(dispatcher.transport, [0.0],
                      on_send=lambda count: dispatcher.request_stop() if count == 2 else None)
    dispatcher.transport = relay

    report = dispatcher.run(T0)

    # The second send was under way when the stop came: it finishes and is recorded; the message
    # already handed to the sender behind it is not attempted.
    assert (report.sent, report.released, relay.sent) == (2, 4, 2)
    assert len(smtp_server.messages) == 2
    assert store.counts_by_status().get("sending", 0) == 0


class CountingRelay:
    """The relay process, counting the messages the dispatcher handed over and has not yet
    collected."""

    def __init__(self, transport: ProcessTransport) -> None:
        self._transport = transport
        self.outstanding = 0

    def begin(self, message: Any) -> None:
        self.outstanding += 1
        self._transport.begin(message)

    def finish(self) -> Any:
        self.outstanding -= 1
        return self._transport.finish()

    def send(self, message: Any) -> Any:
        return self._transport.send(message)

    def reset(self) -> None:
        self._transport.reset()

    def close(self) -> None:
        self._transport.close()


class ClaimWatcher:
    """The real store, noting how many messages were still with the relay at each claim."""

    def __init__(self, store: SqlStore, relay: CountingRelay) -> None:
        self._store, self._relay = store, relay
        self.outstanding_at_claims: list[int] = []

    def claim_due(self, **kwargs: Any) -> Any:
        self.outstanding_at_claims.append(self._relay.outstanding)
        return self._store.claim_due(**kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def test_a_run_claims_the_next_batch_while_the_relay_still_has_messages(
        store: SqlStore, content: ContentHolder, smtp_server: Any,
        caplog: pytest.LogCaptureFixture) -> None:
    emails = [f"p{index}@example.org" for index in range(12)]
    for email in emails:
        _enroll(store, content, email, hesitations=("stigma",))
    endpoint = parse_smtp_url(f"smtp://127.0.0.1:{smtp_server.port}")
    relay = CountingRelay(ProcessTransport(endpoint, timeout=5))
    watcher = ClaimWatcher(store, relay)
    dispatcher = make_dispatcher(watcher, content, relay, batch_size=5)
    try:
        with caplog.at_level("INFO", logger="nurture.engine.dispatcher"):
            report = dispatcher.run(T0)
    finally:
        relay.close()

    # Claims of 5, 5, 2: the second and the third were made with messages of the one before
    # still with the relay; the first had none, and a short claim ends the run.
    assert (report.claimed, report.sent) == (12, 12)
    assert len(watcher.outstanding_at_claims) == 3
    assert watcher.outstanding_at_claims[0] == 0
    assert all(count > 0 for count in watcher.outstanding_at_claims[1:])
    assert relay.outstanding == 0
    assert len(smtp_server.messages) == 12
    counts = {status: n for status, n in store.counts_by_status().items() if n}
    assert counts == {"sent": 12, "queued": 12}  # the welcome emails, and each next step
    batches = [record for record in caplog.records if record.getMessage() == "dispatch batch"]
    assert [(r.claimed, r.sent) for r in batches] == [(5, 5), (5, 5), (2, 2)]


def test_a_stop_hears_out_what_the_relay_process_holds_and_releases_the_rest(
        store: SqlStore, content: ContentHolder, smtp_server: Any) -> None:
    count = 120
    for index in range(count):
        _enroll(store, content, f"p{index}@example.org", hesitations=("stigma",))
    endpoint = parse_smtp_url(f"smtp://127.0.0.1:{smtp_server.port}")
    relay = CountingRelay(ProcessTransport(endpoint, timeout=5))
    dispatcher = make_dispatcher(store, content, relay, batch_size=count)
    finished = 0
    handed_over_at_stop: list[int] = []
    original_finish = relay.finish

    def finish_and_stop_at_the_fifth() -> Any:
        nonlocal finished
        finished += 1
        if finished == 5:
            # Four collected, and this one with the rest still with the relay process.
            handed_over_at_stop.append(4 + relay.outstanding)
            dispatcher.request_stop()
        return original_finish()

    relay.finish = finish_and_stop_at_the_fifth  # type: ignore[method-assign]
    try:
        report = dispatcher.run(T0)
    finally:
        relay.close()

    # Whatever the relay process held when the stop came went out and is recorded as sent;
    # nothing more was handed over; the rest of the claim is released, not left leased.
    (handed_over,) = handed_over_at_stop
    assert 5 <= handed_over <= 5 + SEND_AHEAD_LIMIT < count
    assert report.sent == handed_over == len(smtp_server.wait_for(handed_over))
    assert (report.claimed, report.released) == (count, count - handed_over)
    counts = store.counts_by_status()
    assert counts["sending"] == 0 and counts["sent"] == handed_over
