"""The duplicate window at full speed, through the relay process to a real SMTP server, on SQLite
and PostgreSQL: at every moment, what a kill -9 would send again is at most SEND_AHEAD_LIMIT
messages, and a scheduler that dies after the relay took messages leaves them recorded as sent
by the next one rather than sent twice."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from nurture.content.library import ContentHolder
from nurture.domain.people import make_person
from nurture.engine.enrollment import enroll
from nurture.engine.pacing import MARK_EVERY, SEND_AHEAD_LIMIT
from nurture.engine.ports import ConsentRecord, DeliveryStatus
from nurture.setting_values import parse_smtp_url
from nurture.smtp.relay_process import ProcessTransport
from nurture.store.models import delivery_table
from nurture.store.sql.store import SqlStore
from tests.support.clock import T0
from tests.support.dispatchers import make_dispatcher
from tests.support.paths import ROOT

LEASE = timedelta(minutes=5)


@pytest.fixture
def content() -> ContentHolder:
    return ContentHolder(ROOT / "sequences", ROOT / "templates")


@pytest.fixture
def relay(smtp_server: Any) -> Iterator[ProcessTransport]:
    transport = ProcessTransport(parse_smtp_url(f"smtp://127.0.0.1:{smtp_server.port}"), timeout=5)
    yield transport
    transport.close()


def _enroll(store: SqlStore, content: ContentHolder, count: int) -> None:
    people = [make_person(f"p{index}@example.org", "Asha", "Europe/London", ("stigma",))
              for index in range(count)]
    results = enroll(store, content.current, people, "sample",
                     ConsentRecord(kind="operator", source="test"), T0)
    assert all(result.created for result in results)


class AtRiskRelay:
    """The relay process, counting before each message it is handed what a kill -9 of the
    dispatcher at that moment would send again: messages handed over whose rows are still
    leased with no acceptance marked on them, read from the database."""

    def __init__(self, transport: ProcessTransport, store: SqlStore) -> None:
        self._transport, self._engine = transport, store.engine
        self.handed: list[str] = []
        self.at_risk: list[int] = []

    def begin(self, message: Any) -> None:
        with self._engine.connect() as conn:
            settled = conn.scalar(select(func.count()).select_from(delivery_table).where(
                delivery_table.c.message_id.in_(self.handed) if self.handed else False,
                delivery_table.c.status == DeliveryStatus.SENT.value)) or 0
            marked = conn.scalar(select(func.count()).select_from(delivery_table).where(
                delivery_table.c.status == DeliveryStatus.SENDING.value,
                delivery_table.c.accepted_at.is_not(None))) or 0
        self.handed.append(message.message_id)
        self.at_risk.append(len(self.handed) - settled - marked)
        self._transport.begin(message)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


def test_what_a_crash_would_send_again_stays_within_the_send_ahead_limit(
        store: SqlStore, content: ContentHolder, relay: ProcessTransport,
        smtp_server: Any) -> None:
    _enroll(store, content, 300)
    watched = AtRiskRelay(relay, store)
    # Batches longer than the limit: recording only between them would leave a whole batch
    # at risk.
    dispatcher = make_dispatcher(store, content, watched, batch_size=150)

    assert dispatcher.run(T0).sent == 300

    assert len(smtp_server.messages) == 300
    assert max(watched.at_risk) <= SEND_AHEAD_LIMIT
    # Sending ahead and marking in groups were both at work: many messages were at risk at once.
    assert max(watched.at_risk) >= MARK_EVERY // 2


class Crash(BaseException):
    """A kill -9 as the dispatcher sees it: nothing it writes after this gets through."""


class DyingStore:
    """The store of a scheduler that dies the moment it would record its first outcome."""

    def __init__(self, store: SqlStore) -> None:
        self._store = store

    def record(self, outcomes: Any, *, owner: str) -> None:
        raise Crash

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def test_a_scheduler_that_dies_before_its_record_leaves_the_accepted_messages_sent_once(
        store: SqlStore, content: ContentHolder, relay: ProcessTransport,
        smtp_server: Any) -> None:
    _enroll(store, content, 100)
    dying = make_dispatcher(DyingStore(store), content, relay, owner="dies",
                            batch_size=100, recheck_interval=timedelta(hours=1))
    with pytest.raises(Crash):
        dying.run(T0)
    first_copies = len(smtp_server.messages)
    assert first_copies == 100

    after_lease = T0 + LEASE + timedelta(seconds=1)
    report = make_dispatcher(store, content, relay, owner="next").run(after_lease)

    copies = Counter(item.message["Message-ID"] for item in smtp_server.messages)
    again = sum(count - 1 for count in copies.values())
    assert len(copies) == 100
    assert again <= SEND_AHEAD_LIMIT
    assert report.sent == 100
    counts = store.counts_by_status()
    # Every first step recorded sent, and every enrollment's second step queued after it.
    assert (counts.get("sent"), counts.get("queued"), counts.get("sending", 0)) == (100, 100, 0)
    # A row sent once was recorded from its mark, at the first relay's time; a row sent twice
    # was not marked before the crash, and is recorded from the second sending.
    for index in range(100):
        (row,) = [d for d in store.deliveries_for(f"p{index}@example.org")
                  if d.step_key == "welcome"]
        assert row.sent_at is not None
        assert (copies[row.message_id] == 1) == (row.sent_at < after_lease)
