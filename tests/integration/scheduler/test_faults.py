"""Delivery under faults: several scheduler processes on PostgreSQL, kill -9, SMTP 4xx/5xx, dropped and
silent relays, a killed database connection, an unsubscribe mid-batch, DST, the breaker, SIGTERM.

Each test prints its figures (sent, duplicates, lost, retries); run pytest with -s to see them.
"""

from __future__ import annotations

import json
import logging
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import policy as email_policy
from email.parser import BytesHeaderParser
from itertools import pairwise
from pathlib import Path
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

import psycopg
import pytest
from aiosmtpd.smtp import Envelope
from sqlalchemy import Engine, func, select
from sqlalchemy.engine import make_url

from nurture.clock import utcnow
from nurture.content.library import ContentHolder
from nurture.domain.people import make_person
from nurture.engine.decisions import message_id_for, retry_delay
from nurture.engine.dispatcher import Dispatcher
from nurture.engine.enrollment import enroll
from nurture.engine.policy import DispatchPolicy
from nurture.engine.ports import (
    ClaimedDelivery,
    ConsentRecord,
    DeliveryStatus,
    EnrollmentStatus,
    NewEnrollment,
    NextDelivery,
    OutgoingMessage,
    SendResult,
    SubscriberStatus,
    Transport,
)
from nurture.engine.throttle import CircuitBreaker, Throttle
from nurture.setting_values import parse_smtp_url
from nurture.smtp.transports import SmtpTransport
from nurture.store.accounts.store import AccountStore
from nurture.store.models import Delivery, Subscriber
from nurture.store.sql.store import SqlStore
from tests.support.clock import T0
from tests.support.dispatchers import DOMAIN
from tests.support.dispatchers import make_dispatcher as support_dispatcher
from tests.support.schedulers import Schedulers, copy_content, wait_until
from tests.support.smtp import ReceivedMessage, RecordingSmtpServer, SilentServer
from tests.support.stores import subscriber_status

# A Monday, 10:00 in London (GMT), inside the sample's 09:00-20:00 window.
CONSENT = ConsentRecord(kind="operator", source="fault-test")


def figures(name: str, **values: object) -> None:
    print(f"\n[faults] {name}: " + " ".join(f"{key}={value}" for key, value in values.items()))


# -- content, dispatcher and enrollment helpers ---------------------------------------------------


@pytest.fixture(scope="module")
def sample_dirs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return copy_content(tmp_path_factory.mktemp("content"), all_day=False)


@pytest.fixture(scope="module")
def all_day_dirs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return copy_content(tmp_path_factory.mktemp("content-all-day"), all_day=True)


@pytest.fixture
def content(sample_dirs: tuple[Path, Path]) -> ContentHolder:
    return ContentHolder(*sample_dirs)


def make_dispatcher(store: Any, content: ContentHolder, transport: Transport, *,
                    throttle: Throttle | None = None, **policy: Any) -> Dispatcher:
    """Batches of 50, and no breaker unless a test brings one: every fault reaches the relay."""
    return support_dispatcher(store, content, transport, owner="fault-test",
                              throttle=throttle or Throttle(), **{"batch_size": 50, **policy})


def smtp(url: str, timeout: float = 5.0) -> SmtpTransport:
    return SmtpTransport(parse_smtp_url(url), timeout=timeout)


def enroll_people(store: SqlStore, content: ContentHolder, emails: list[str], *,
                  now: datetime = T0, time_zone: str = "Europe/London") -> None:
    people = [make_person(email, None, time_zone, ("stigma",)) for email in emails]
    results = enroll(store, content.current, people, "sample", CONSENT, now)
    assert all(result.created for result in results), results


def enroll_bulk(store: SqlStore, count: int, due_at: datetime, prefix: str = "p") -> None:
    """Many subscribers in one statement batch, each with a welcome due at `due_at`."""
    store.enroll(
        [
            NewEnrollment(email=f"{prefix}{i}@example.org", first_name=None, time_zone="UTC",
                          hesitations=frozenset(), discreet=False, locale="en",
                          sequence_key="sample", content_version="fault-test",
                          first_delivery=NextDelivery("welcome", due_at), consent=CONSENT)
            for i in range(count)
        ],
        now=due_at,
    )


def due_welcomes(store: SqlStore, count: int) -> set[UUID]:
    """`count` welcomes due a second ago on the real clock, the schedulers' own: their ids."""
    enroll_bulk(store, count, utcnow() - timedelta(seconds=1))
    return welcome_ids(store.engine)


def welcome_ids(engine: Engine) -> set[UUID]:
    with engine.connect() as conn:
        return set(conn.scalars(select(Delivery.id).where(Delivery.step_key == "welcome")))


def welcome_statuses(engine: Engine) -> Counter[str]:
    with engine.connect() as conn:
        rows = conn.execute(select(Delivery.status, func.count())
                            .where(Delivery.step_key == "welcome").group_by(Delivery.status))
        return Counter({str(status): int(count) for status, count in rows})


def leased_by(engine: Engine, owner: str) -> int:
    with engine.connect() as conn:
        return int(conn.scalar(select(func.count()).select_from(Delivery).where(
            Delivery.status == DeliveryStatus.SENDING.value, Delivery.lease_owner == owner)) or 0)


def tally(server: RecordingSmtpServer, expected: set[UUID]) -> tuple[int, int, int]:
    """(received, duplicates, lost) by Message-ID; every received ID must be one we expected."""
    wanted = {message_id_for(delivery_id, DOMAIN) for delivery_id in expected}
    counts = Counter(str(m.message["Message-ID"]) for m in server.messages)
    assert set(counts) <= wanted, "a message with an unknown Message-ID was sent"
    duplicates = sum(count - 1 for count in counts.values())
    return sum(counts.values()), duplicates, len(wanted - set(counts))


@dataclass
class Attempts:
    """A transport that notes every send: Message-ID, the simulated time, the reply."""

    inner: Transport
    clock: Callable[[], datetime]
    log: list[tuple[str, datetime, SendResult]] = field(default_factory=list)
    before_send: Callable[[OutgoingMessage], None] | None = None

    def send(self, message: OutgoingMessage) -> SendResult:
        if self.before_send is not None:
            self.before_send(message)
        result = self.inner.send(message)
        self.log.append((message.message_id, self.clock(), result))
        return result

    def close(self) -> None:
        self.inner.close()


# -- scheduler processes --------------------------------------------------------------------------


class HeadersOnlyServer(RecordingSmtpServer):
    """The recording server, parsing only the headers of each message: thousands of full MIME
    parses in the test process would make the relay, not the schedulers, the bottleneck."""

    _parser = BytesHeaderParser(policy=email_policy.default)

    def _record(self, envelope: Envelope) -> None:
        data = bytes(envelope.original_content or b"")
        received = ReceivedMessage(envelope_from=str(envelope.mail_from),
                                   recipients=tuple(envelope.rcpt_tos), data=b"",
                                   message=self._parser.parsebytes(data))
        with self._changed:
            self._messages.append(received)
            self._changed.notify_all()


@pytest.fixture
def relay() -> Iterator[RecordingSmtpServer]:
    with HeadersOnlyServer() as server:
        yield server



# -- 1. several schedulers ------------------------------------------------------------------------


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
@pytest.mark.postgres
@pytest.mark.slow
def test_three_schedulers_send_every_delivery_exactly_once(
    database_url: str, store: SqlStore, relay: RecordingSmtpServer,
    all_day_dirs: tuple[Path, Path], schedulers_for: Callable[..., Schedulers],
) -> None:
    count = 3000
    expected = due_welcomes(store, count)
    group = schedulers_for(relay.port, all_day_dirs)
    started = time.monotonic()
    for _ in range(3):
        group.start()
    relay.wait_for(count, timeout=120)
    wait_until(lambda: welcome_statuses(store.engine)["sent"] == count, 30, "every row sent")
    elapsed = time.monotonic() - started
    assert group.stop_all() == [0, 0, 0]

    received, duplicates, lost = tally(relay, expected)
    per_process = group.sent_by_each()
    figures("three schedulers", deliveries=count, received=received, duplicates=duplicates,
            lost=lost, sent_per_process=per_process, seconds=f"{elapsed:.1f}")
    assert (received, duplicates, lost) == (count, 0, 0)
    assert welcome_statuses(store.engine) == Counter({"sent": count})
    assert sum(per_process) == count
    assert all(sent > 0 for sent in per_process), "every process took a share"


# -- 2. kill -9 mid-batch ---------------------------------------------------------------------------


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
@pytest.mark.postgres
@pytest.mark.slow
def test_kill_9_mid_batch_loses_nothing_and_duplicates_at_most_what_was_in_flight(
    database_url: str, store: SqlStore, relay: RecordingSmtpServer,
    all_day_dirs: tuple[Path, Path], schedulers_for: Callable[..., Schedulers],
) -> None:
    count, kills = 1200, 3
    seed = random.randrange(1_000_000)
    rng = random.Random(seed)
    expected = due_welcomes(store, count)
    group = schedulers_for(relay.port, all_day_dirs, NURTURE_LEASE_SECONDS="10")
    group.start()
    group.start()
    in_flight: list[int] = []
    for _ in range(kills):
        target = min(len(relay.messages) + rng.randint(20, 250), count - 50)
        relay.wait_for(target, timeout=60)
        victim = rng.choice(group.running)
        group.kill(victim)
        in_flight.append(leased_by(store.engine, group.owner(victim)))
        group.start()

    def only_dead_leases_left() -> bool:
        statuses = welcome_statuses(store.engine)
        return statuses["queued"] == 0 and statuses["deferred"] == 0
    wait_until(only_dead_leases_left, 90, "the survivors to send everything they could")
    assert group.stop_all() == [0, 0]
    # Leases of the killed processes that nobody took over yet: pass their expiry with the
    # clock passed in rather than slept.
    later = (utcnow() + timedelta(minutes=2)).isoformat()
    finish = subprocess.run([sys.executable, "-m", "nurture", "dispatch", "--now", later, "--json"],
                            env=group.env, cwd=group.workdir, capture_output=True, text=True,
                            timeout=120, check=False)
    assert finish.returncode == 0, finish.stderr

    received, duplicates, lost = tally(relay, expected)
    figures("kill -9", seed=seed, deliveries=count, kills=kills, in_flight_at_kills=in_flight,
            received=received, duplicates=duplicates, lost=lost,
            sent_by_final_dispatch=json.loads(finish.stdout)["sent"])
    assert lost == 0
    assert duplicates <= sum(in_flight)
    assert welcome_statuses(store.engine) == Counter({"sent": count})


# -- 3. 4xx then 250: backoff with the clock passed in ------------------------------------------------


def test_temporary_failures_retry_with_backoff_then_deliver(
    store: SqlStore, content: ContentHolder, smtp_server: RecordingSmtpServer, smtp_url: str,
) -> None:
    emails = [f"retry{i}@example.org" for i in range(3)]
    enroll_people(store, content, emails)
    replies = ["451 4.3.0 Try again later", "421 4.4.2 Closing connection",
               "452 4.3.1 Insufficient system storage"] * 5
    smtp_server.faults.data_actions.extend(replies)
    now = T0
    transport = Attempts(smtp(smtp_url), clock=lambda: now)
    policy = DispatchPolicy(batch_size=50, retry_base=timedelta(seconds=60),
                            retry_max=timedelta(seconds=300), max_attempts=8)
    dispatcher = make_dispatcher(store, content, transport, retry_base=policy.retry_base,
                                 retry_max=policy.retry_max, max_attempts=policy.max_attempts)
    tick = timedelta(seconds=5)
    while len(smtp_server.messages) < len(emails) and now < T0 + timedelta(hours=2):
        dispatcher.run(now)
        now += tick

    by_message: dict[str, list[tuple[datetime, SendResult]]] = {}
    for message_id, at, result in transport.log:
        by_message.setdefault(message_id, []).append((at, result))
    delays_seen = []
    for email in emails:
        (row,) = [d for d in store.deliveries_for(email) if d.step_key == "welcome"]
        tries = by_message[message_id_for(row.id, DOMAIN)]
        assert row.status is DeliveryStatus.SENT
        assert row.attempts == len(tries), "every attempt is counted"
        assert [result.ok for _, result in tries] == [False] * (len(tries) - 1) + [True]
        for number, ((failed_at, _), (next_at, _)) in enumerate(pairwise(tries), start=1):
            delay = retry_delay(row.id, number, policy)
            exponential = policy.retry_base * 2 ** (number - 1)
            cap = policy.retry_max
            assert min(exponential, cap) <= delay <= min(exponential * 1.25, cap)
            # Retried on the first tick at or after the backoff, never before.
            assert delay <= next_at - failed_at < delay + tick
            delays_seen.append(delay.total_seconds())
    received, duplicates, lost = tally(smtp_server, {d.id for e in emails
                                                     for d in store.deliveries_for(e)
                                                     if d.step_key == "welcome"})
    figures("451/421/452 then 250", sent=received, duplicates=duplicates, lost=lost,
            retries=len(replies), delays_s=sorted(set(round(d) for d in delays_seen)))
    assert len(transport.log) == len(replies) + len(emails)
    assert (received, duplicates, lost) == (3, 0, 0)
    assert max(delays_seen) == 300, "the cap was reached"


def test_temporary_failures_end_as_failed_after_max_attempts(
    store: SqlStore, content: ContentHolder, smtp_server: RecordingSmtpServer, smtp_url: str,
) -> None:
    enroll_people(store, content, ["never@example.org"])
    smtp_server.faults.fail_data(50)
    dispatcher = make_dispatcher(store, content, smtp(smtp_url), max_attempts=3,
                                 retry_base=timedelta(seconds=60))
    now = T0
    while now < T0 + timedelta(hours=1):
        dispatcher.run(now)
        now += timedelta(seconds=10)
    (row,) = [d for d in store.deliveries_for("never@example.org") if d.step_key == "welcome"]
    figures("always 451", attempts=row.attempts, status=row.status.value, sent=0)
    assert (row.status, row.attempts, row.smtp_code) == (DeliveryStatus.FAILED, 3, 451)
    assert smtp_server.messages == []


# -- 4. 550 for some recipients ------------------------------------------------------------------------


def test_hard_bounce_suppresses_and_ends_only_those_enrollments(
    store: SqlStore, content: ContentHolder, smtp_server: RecordingSmtpServer, smtp_url: str,
) -> None:
    emails = [f"r{i}@example.org" for i in range(6)]
    rejected = {"r1@example.org", "r4@example.org"}
    for email in rejected:
        smtp_server.faults.reject_recipient(email, "550 5.1.1 No such user")
    enroll_people(store, content, emails)
    dispatcher = make_dispatcher(store, content, smtp(smtp_url))

    report = dispatcher.run(T0)

    figures("550 5.1.1", sent=report.sent, bounced=report.bounced,
            suppressed=sum(store.is_suppressed(e) for e in emails))
    assert (report.sent, report.bounced) == (4, 2)
    for email in emails:
        deliveries = {d.step_key: d for d in store.deliveries_for(email)}
        (enrollment,) = store.enrollments_for(email)
        if email in rejected:
            assert deliveries["welcome"].status is DeliveryStatus.BOUNCED
            assert deliveries["welcome"].smtp_code == 550
            assert store.is_suppressed(email)
            assert subscriber_status(store.engine, email) == SubscriberStatus.BOUNCED.value
            assert enrollment.status is EnrollmentStatus.EXITED
            assert set(deliveries) == {"welcome"}, "nothing more is queued"
        else:
            assert deliveries["welcome"].status is DeliveryStatus.SENT
            assert not store.is_suppressed(email)
            assert subscriber_status(store.engine, email) == SubscriberStatus.ACTIVE.value
            assert enrollment.status is EnrollmentStatus.ACTIVE
            assert deliveries["understanding"].status is DeliveryStatus.QUEUED
    assert {m.recipients[0] for m in smtp_server.messages} == set(emails) - rejected


# -- 5. dropped mid-DATA, and a relay that never answers -------------------------------------------


def test_connection_dropped_mid_data_loses_nothing(
    store: SqlStore, content: ContentHolder, smtp_server: RecordingSmtpServer, smtp_url: str,
) -> None:
    emails = [f"drop{i}@example.org" for i in range(4)]
    enroll_people(store, content, emails)
    smtp_server.faults.drop_during_data(1)
    dispatcher = make_dispatcher(store, content, smtp(smtp_url))

    started = time.monotonic()
    first = dispatcher.run(T0)
    elapsed = time.monotonic() - started
    assert (first.sent, first.deferred, first.released) == (0, 1, 3)
    assert store.counts_by_status()["sending"] == 0
    second = dispatcher.run(T0 + timedelta(minutes=2))

    expected = {d.id for e in emails for d in store.deliveries_for(e) if d.step_key == "welcome"}
    received, duplicates, lost = tally(smtp_server, expected)
    figures("drop mid-DATA", first_run_s=f"{elapsed:.2f}", released=first.released,
            sent=received, duplicates=duplicates, lost=lost)
    assert elapsed < 5
    assert second.sent == 4
    assert (received, duplicates, lost) == (4, 0, 0)


def test_silent_relay_times_out_and_loses_nothing(
    store: SqlStore, content: ContentHolder, silent_server: SilentServer,
    smtp_server: RecordingSmtpServer, smtp_url: str,
) -> None:
    emails = [f"silent{i}@example.org" for i in range(4)]
    enroll_people(store, content, emails)
    timeout = 1.0
    dispatcher = make_dispatcher(store, content, smtp(silent_server.url, timeout=timeout))

    started = time.monotonic()
    report = dispatcher.run(T0)
    elapsed = time.monotonic() - started
    counts = store.counts_by_status()
    assert (report.sent, report.deferred, report.released) == (0, 1, 3)
    assert counts["sending"] == 0 and counts["deferred"] + counts["queued"] >= 4

    dispatcher.transport = smtp(smtp_url)  # the relay comes back (a config fix, a failover)
    later = dispatcher.run(T0 + timedelta(minutes=2))
    expected = {d.id for e in emails for d in store.deliveries_for(e) if d.step_key == "welcome"}
    received, duplicates, lost = tally(smtp_server, expected)
    figures("silent relay", timeout_s=timeout, returned_after_s=f"{elapsed:.2f}",
            sent=received, duplicates=duplicates, lost=lost)
    assert elapsed < timeout + 2, "a silent relay costs one timeout, never a hang"
    assert later.sent == 4
    assert (received, duplicates, lost) == (4, 0, 0)


# -- 6. the database connection killed during a dispatch ------------------------------------------


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
@pytest.mark.postgres
@pytest.mark.slow
def test_killed_database_connections_recover_on_the_next_tick(
    database_url: str, store: SqlStore, relay: RecordingSmtpServer,
    all_day_dirs: tuple[Path, Path], schedulers_for: Callable[..., Schedulers],
) -> None:
    count = 800
    expected = due_welcomes(store, count)
    group = schedulers_for(relay.port, all_day_dirs)
    process = group.start()
    relay.wait_for(1, timeout=30)
    terminated = 0
    libpq_url = make_url(database_url).set(drivername="postgresql")
    with psycopg.connect(libpq_url.render_as_string(hide_password=False), autocommit=True) as admin:
        for _ in range(80):
            if len(relay.messages) >= count - 100:
                break
            terminated += len(admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()").fetchall())
            time.sleep(0.03)
    relay.wait_for(count, timeout=90)
    wait_until(lambda: welcome_statuses(store.engine)["sent"] == count, 30, "every row sent")
    alive = process.poll() is None
    assert group.stop_all() == [0]

    log_text = group.log_text(0)
    failed_ticks = log_text.count("dispatch tick failed")
    write_retries = log_text.count("store write failed; retrying")
    received, duplicates, lost = tally(relay, expected)
    figures("database connections killed", backends_terminated=terminated,
            failed_ticks=failed_ticks, store_write_retries=write_retries, received=received,
            duplicates=duplicates, lost=lost)
    assert alive, "the scheduler recovered without a restart"
    assert terminated > 0
    assert (received, duplicates, lost) == (count, 0, 0)


# -- 7. an unsubscribe between claim and send ---------------------------------------------------------


class UnsubscribeAfterClaim:
    """The real store, except that right after a claim one subscriber unsubscribes through the
    same path the web page uses."""

    def __init__(self, store: SqlStore, email: str) -> None:
        self._store = store
        self._email = email
        self.unsubscribed = False

    def claim_due(self, **kwargs: Any) -> list[ClaimedDelivery]:
        claims = self._store.claim_due(**kwargs)
        for claim in claims:
            if claim.subscriber.email == self._email and not self.unsubscribed:
                AccountStore(self._store.engine).unsubscribe(
                    claim.subscriber.id, consent=ConsentRecord(kind="unsubscribe", source="test"),
                    now=kwargs["now"])
                self.unsubscribed = True
        return claims

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def test_unsubscribe_between_claim_and_send_stops_that_email(
    store: SqlStore, content: ContentHolder, smtp_server: RecordingSmtpServer, smtp_url: str,
) -> None:
    emails = [f"u{i}@example.org" for i in range(5)]
    enroll_people(store, content, emails)
    leaving = "u2@example.org"
    wrapped = UnsubscribeAfterClaim(store, leaving)
    dispatcher = make_dispatcher(wrapped, content, smtp(smtp_url))

    report = dispatcher.run(T0)

    assert wrapped.unsubscribed
    (welcome,) = [d for d in store.deliveries_for(leaving) if d.step_key == "welcome"]
    figures("unsubscribe after claim", claimed=report.claimed, sent=report.sent,
            skipped=report.skipped, sent_to_leaver=0)
    assert (report.claimed, report.sent, report.skipped) == (5, 4, 1)
    assert welcome.status is DeliveryStatus.SKIPPED
    assert welcome.skip_reason == "subscriber unsubscribed"
    assert leaving not in {m.recipients[0] for m in smtp_server.messages}


def test_unsubscribe_during_the_batch_is_seen_before_the_next_send(
    store: SqlStore, content: ContentHolder, smtp_server: RecordingSmtpServer, smtp_url: str,
) -> None:
    emails = [f"v{i}@example.org" for i in range(5)]
    enroll_people(store, content, emails)
    accounts = AccountStore(store.engine)
    leaving: list[str] = []

    def unsubscribe_someone_else_during_the_first_send(message: OutgoingMessage) -> None:
        if leaving:
            return
        # The last of this batch (claims go in due time then id order): their row is already
        # claimed (`sending`). The next one has been handed to the sender already, one ahead.
        last = max((d.id, email) for email in emails for d in store.deliveries_for(email)
                   if d.step_key == "welcome")
        leaving.append(last[1])
        with store.engine.connect() as conn:
            subscriber_id = conn.scalar(select(Subscriber.id).where(Subscriber.email == leaving[0]))
        accounts.unsubscribe(subscriber_id, consent=ConsentRecord(kind="unsubscribe",
                                                                  source="test"), now=T0)

    transport = Attempts(smtp(smtp_url), clock=lambda: T0,
                         before_send=unsubscribe_someone_else_during_the_first_send)
    # 0: re-read before each message is handed to the sender, so an unsubscribe in the middle of
    # a batch counts from the message after the one already handed over.
    dispatcher = make_dispatcher(store, content, transport, recheck_interval=timedelta(0))

    report = dispatcher.run(T0)

    figures("unsubscribe mid-batch", sent=report.sent, skipped=report.skipped, sent_to_leaver=0)
    assert (report.claimed, report.sent, report.skipped) == (5, 4, 1)
    (welcome,) = [d for d in store.deliveries_for(leaving[0]) if d.step_key == "welcome"]
    assert welcome.status is DeliveryStatus.SKIPPED
    assert leaving[0] not in {m.recipients[0] for m in smtp_server.messages}


# -- 8. across a DST change ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("zone", "enrolled_at", "expected_at"),
    [
        # Saturday 20:30 EST; Sunday 9:00 is EDT after the spring-forward at 02:00: 13:00 UTC.
        ("America/New_York", datetime(2026, 3, 8, 1, 30, tzinfo=UTC),
         datetime(2026, 3, 8, 13, 0, tzinfo=UTC)),
        # Saturday 21:00 GMT; Sunday 9:00 is BST after 01:00 GMT: 08:00 UTC.
        ("Europe/London", datetime(2026, 3, 28, 21, 0, tzinfo=UTC),
         datetime(2026, 3, 29, 8, 0, tzinfo=UTC)),
        # Saturday 21:00 EDT; Sunday 9:00 is EST after the fall-back (01:00 happens twice).
        ("America/New_York", datetime(2026, 11, 1, 1, 0, tzinfo=UTC),
         datetime(2026, 11, 1, 14, 0, tzinfo=UTC)),
    ],
    ids=["new-york-spring", "london-spring", "new-york-fall"],
)
def test_batch_due_across_a_dst_change_is_sent_once_inside_the_window(
    store: SqlStore, content: ContentHolder, smtp_server: RecordingSmtpServer, smtp_url: str,
    zone: str, enrolled_at: datetime, expected_at: datetime,
) -> None:
    emails = [f"dst{i}@example.org" for i in range(5)]
    enroll_people(store, content, emails, now=enrolled_at, time_zone=zone)
    dispatcher = make_dispatcher(store, content, smtp(smtp_url))
    now = enrolled_at
    while now <= enrolled_at + timedelta(hours=36):  # ticks every 10 minutes through the change
        dispatcher.run(now)
        now += timedelta(minutes=10)

    sent = [d for e in emails for d in store.deliveries_for(e) if d.status is DeliveryStatus.SENT]
    local = {d.sent_at.astimezone(ZoneInfo(zone)).strftime("%a %H:%M %Z") for d in sent
             if d.sent_at is not None}
    received, duplicates, lost = tally(smtp_server, {d.id for d in sent})
    figures(f"DST {zone}", sent=received, duplicates=duplicates, lost=lost,
            sent_at_utc=expected_at.strftime("%H:%M"), local=sorted(local))
    assert [d.step_key for d in sent] == ["welcome"] * len(emails)
    # Sent on the tick at 9:00 local; the record holds the relay's reply time, a moment later.
    assert all(d.sent_at is not None and timedelta(0) <= d.sent_at - expected_at < timedelta(seconds=5)
               for d in sent)
    assert local == {expected_at.astimezone(ZoneInfo(zone)).strftime("Sun 09:00 %Z")}
    assert (received, duplicates, lost) == (len(emails), 0, 0)


# -- 9. the circuit breaker ----------------------------------------------------------------------------


def test_breaker_stops_hammering_a_failing_relay_and_logs_once(
    store: SqlStore, content: ContentHolder, smtp_server: RecordingSmtpServer, smtp_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    emails = [f"b{i}@example.org" for i in range(10)]
    enroll_people(store, content, emails)
    clock = [0.0]
    breaker = CircuitBreaker(failures=3, cooldown=60, clock=lambda: clock[0])
    now = T0
    transport = Attempts(smtp(smtp_url, timeout=2), clock=lambda: now)
    dispatcher = make_dispatcher(store, content, transport, throttle=Throttle(breaker=breaker))
    smtp_server.stop()

    with caplog.at_level(logging.WARNING, logger="nurture.engine.throttle"):
        for _ in range(8):  # every 2 minutes, so the deferred row is due again each time
            dispatcher.run(now)
            now += timedelta(minutes=2)
            clock[0] += 5
    tried_while_failing = len(transport.log)
    opened_logs = [r for r in caplog.records if "circuit opened" in r.getMessage()]
    assert store.counts_by_status()["sending"] == 0

    smtp_server.start()
    clock[0] += 60
    report = dispatcher.run(now)
    figures("breaker", runs_while_down=8, sends_tried_while_down=tried_while_failing,
            openings_logged=len(opened_logs), sent_after_recovery=report.sent)
    assert tried_while_failing == 3, "after 3 failures nothing more was tried"
    assert len(opened_logs) == 1
    assert report.sent == len(emails)
    assert breaker.state.value == "closed"


# -- 10. a slow batch and a flaky store, in-process ---------------------------------------------------


def test_a_slow_batch_keeps_its_leases_so_no_other_process_takes_its_rows(
    store: SqlStore, content: ContentHolder, smtp_server: RecordingSmtpServer, smtp_url: str,
) -> None:
    emails = [f"slow{i}@example.org" for i in range(40)]
    enroll_people(store, content, emails)
    ticks = [0.0]
    stolen: list[int] = []

    def one_second_per_send_and_a_rival_at_30s(message: OutgoingMessage) -> None:
        ticks[0] += 1.0
        if ticks[0] == 30:
            # A second scheduler claiming 30 s into a batch whose first lease was 10 s.
            rival = store.claim_due(now=T0 + timedelta(seconds=30), owner="rival", limit=100,
                                    lease=timedelta(seconds=10))
            stolen.append(len(rival))

    transport = Attempts(smtp(smtp_url), clock=lambda: T0,
                         before_send=one_second_per_send_and_a_rival_at_30s)
    dispatcher = make_dispatcher(store, content, transport, lease=timedelta(seconds=10))
    dispatcher.monotonic = lambda: ticks[0]

    report = dispatcher.run(T0)

    expected = {d.id for e in emails for d in store.deliveries_for(e) if d.step_key == "welcome"}
    received, duplicates, lost = tally(smtp_server, expected)
    figures("slow batch, 10 s lease, 40 s of sending", rows_taken_by_rival=stolen[0],
            sent=received, duplicates=duplicates, lost=lost)
    assert stolen == [0], "the re-check renewed the leases"
    assert (report.sent, report.lease_lost) == (40, 0)
    assert (received, duplicates, lost) == (40, 0, 0)


class FlakyStore:
    """The real store, with `record` failing a few times and `recheck` failing once on demand."""

    def __init__(self, store: SqlStore, record_failures: int, recheck_failure_at: int | None):
        self._store = store
        self.record_failures = record_failures
        self.recheck_calls = 0
        self.recheck_failure_at = recheck_failure_at

    def record(self, outcomes: Any, *, owner: str) -> None:
        if self.record_failures:
            self.record_failures -= 1
            raise ConnectionError("server closed the connection unexpectedly")
        self._store.record(outcomes, owner=owner)

    def recheck(self, delivery_ids: Any, **kwargs: Any) -> Any:
        self.recheck_calls += 1
        if self.recheck_calls == self.recheck_failure_at:
            raise ConnectionError("terminating connection due to administrator command")
        return self._store.recheck(delivery_ids, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def test_store_errors_mid_batch_record_what_was_sent_and_release_the_rest(
    store: SqlStore, content: ContentHolder, smtp_server: RecordingSmtpServer, smtp_url: str,
) -> None:
    emails = [f"flaky{i}@example.org" for i in range(6)]
    enroll_people(store, content, emails)
    ticks = [0.0]
    # record fails twice (then works); the 4th re-check (before the 4th send) fails outright.
    flaky = FlakyStore(store, record_failures=2, recheck_failure_at=4)
    transport = Attempts(smtp(smtp_url), clock=lambda: T0)
    dispatcher = make_dispatcher(flaky, content, transport, recheck_interval=timedelta(0))
    naps: list[float] = []
    dispatcher.sleep = naps.append
    dispatcher.monotonic = lambda: ticks[0]

    with pytest.raises(ConnectionError):
        dispatcher.run(T0)
    counts = store.counts_by_status()
    assert (counts["sent"], counts["sending"]) == (3, 0), "3 recorded, the rest released"
    assert naps == [0.1, 0.2], "two retries of the record, with backoff"

    again = dispatcher.run(T0 + timedelta(seconds=1))
    expected = {d.id for e in emails for d in store.deliveries_for(e) if d.step_key == "welcome"}
    received, duplicates, lost = tally(smtp_server, expected)
    figures("store errors mid-batch", record_retries=len(naps), sent_before_error=3,
            sent_on_next_tick=again.sent, duplicates=duplicates, lost=lost)
    assert again.sent == 3
    assert (received, duplicates, lost) == (6, 0, 0)


# -- 11. SIGTERM mid-batch, with the rate limit on ----------------------------------------------------


def test_sigterm_finishes_the_message_in_flight_releases_the_rest_and_exits_0(
    database_url: str, store: SqlStore, relay: RecordingSmtpServer,
    all_day_dirs: tuple[Path, Path], schedulers_for: Callable[..., Schedulers],
) -> None:
    count = 100
    expected = due_welcomes(store, count)
    # 20 a second for the deployment, so a batch of 50 takes 2.5 s and the SIGTERM lands in the
    # middle of one.
    group = schedulers_for(relay.port, all_day_dirs, NURTURE_RATE_PER_SECOND="20")
    process = group.start()
    # The shared bucket refills 20 a second and saves up one: 20 sends take at least 0.95 s.
    relay.wait_for(21, timeout=30)
    first_at = time.monotonic()
    relay.wait_for(41, timeout=30)
    twenty_took = time.monotonic() - first_at
    process.send_signal(signal.SIGTERM)
    stop_started = time.monotonic()
    code = process.wait(timeout=30)
    stop_seconds = time.monotonic() - stop_started
    group.running.remove(process)

    statuses = welcome_statuses(store.engine)
    received_at_stop = len(relay.messages)
    assert code == 0, group.log_text(0)
    assert statuses["sending"] == 0, "the rest of the batch was released"
    assert statuses["sent"] == received_at_stop, "what went out was recorded before exiting"
    finish = subprocess.run([sys.executable, "-m", "nurture", "dispatch"], env={
        **group.env, "NURTURE_RATE_PER_SECOND": "0"}, cwd=group.workdir, capture_output=True, text=True,
        timeout=60, check=False)
    assert finish.returncode == 0, finish.stderr
    received, duplicates, lost = tally(relay, expected)
    figures("SIGTERM", rate_per_s=f"{20 / twenty_took:.1f}", sent_before_stop=received_at_stop,
            stop_seconds=f"{stop_seconds:.2f}", released_to_queue=statuses["queued"],
            received=received, duplicates=duplicates, lost=lost)
    assert twenty_took > 0.9, "the deployment's rate limit held"
    assert stop_seconds < 5
    assert '"scheduler stopped"' in group.log_text(0)
    assert (received, duplicates, lost) == (count, 0, 0)


def test_sigterm_stops_a_dispatch_pass_the_same_way(
    database_url: str, store: SqlStore, relay: RecordingSmtpServer,
    all_day_dirs: tuple[Path, Path], schedulers_for: Callable[..., Schedulers],
) -> None:
    # Found by the chaos soak: a SIGTERM killed `nurture dispatch` outright, and what it had
    # sent since its last record went out a second time after the lease.
    expected = due_welcomes(store, 100)
    env = schedulers_for(relay.port, all_day_dirs, NURTURE_RATE_PER_SECOND="20").env
    process = subprocess.Popen([sys.executable, "-m", "nurture", "dispatch", "--json"], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    relay.wait_for(21, timeout=30)
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=30)

    statuses = welcome_statuses(store.engine)
    received_at_stop = len(relay.messages)
    assert process.returncode == 0, err
    report = json.loads(out.strip().splitlines()[-1])
    assert statuses["sending"] == 0, "the rest of the batch was released"
    assert report["sent"] == statuses["sent"] == received_at_stop
    assert report["released"] > 0
    assert statuses["queued"] == 100 - received_at_stop
    finish = subprocess.run([sys.executable, "-m", "nurture", "dispatch"],
                            env={**env, "NURTURE_RATE_PER_SECOND": "0"}, capture_output=True,
                            text=True, timeout=60, check=False)
    assert finish.returncode == 0, finish.stderr
    assert tally(relay, expected) == (100, 0, 0)
