"""The storage contract's fixtures: a store on each backend (memory, SQLite, PostgreSQL), and a probe
that reads or sets what the ports do not show (a subscriber's status, one delivery row) the same
way on each, so one set of assertions runs everywhere."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Protocol

import pytest
from sqlalchemy import Engine, insert, select, update

from nurture.engine.ports import ConsentRecord, DeliveryKind, DeliveryStatus, SubscriberStatus
from nurture.store.accounts.store import AccountStore
from nurture.store.accounts.types import PendingSignup
from nurture.store.database import make_engine
from nurture.store.memory.store import MemoryStore
from nurture.store.models import Enrollment, Subscriber, delivery_table, subscriber_table
from nurture.store.sql.store import SqlStore
from nurture.store.views import DeliveryView
from tests.support.databases import BACKENDS, migrated_database

STORE_BACKENDS = [pytest.param("memory", id="memory"), *BACKENDS]

AnyStore = MemoryStore | SqlStore


def subscriber_status(engine: Engine, email: str) -> str:
    """The status stored for the subscriber with this address (SQL backends)."""
    with engine.connect() as connection:
        return str(
            connection.execute(
                select(Subscriber.status).where(Subscriber.email == email)
            ).scalar_one()
        )


class StoreProbe(Protocol):
    """What a test reads or sets behind the ports' back."""

    def subscriber_status(self, email: str) -> str: ...

    def set_subscriber_status(self, email: str, status: SubscriberStatus) -> None:
        """Change only the subscriber row, as an unsubscribe landing between two sends does."""
        ...

    def delivery(self, delivery_id: uuid.UUID) -> DeliveryView: ...

    def add_step_delivery(
        self, enrollment_id: uuid.UUID, step_key: str, *, due_at: datetime, now: datetime
    ) -> uuid.UUID:
        """A queued row for one more step of an enrollment, as a test would INSERT it."""
        ...

    def queue_confirmation(self, email: str, *, now: datetime) -> uuid.UUID:
        """A pending subscriber with a queued confirmation email, as a web signup leaves them;
        returns the delivery's id."""
        ...


class SqlProbe:
    def __init__(self, store: SqlStore) -> None:
        self._store = store
        self._engine = store.engine

    def subscriber_status(self, email: str) -> str:
        return subscriber_status(self._engine, email)

    def set_subscriber_status(self, email: str, status: SubscriberStatus) -> None:
        with self._engine.begin() as connection:
            connection.execute(
                update(subscriber_table)
                .where(subscriber_table.c.email == email)
                .values(status=status.value)
            )

    def delivery(self, delivery_id: uuid.UUID) -> DeliveryView:
        with self._engine.connect() as connection:
            email = connection.execute(
                select(Subscriber.email)
                .join(delivery_table, delivery_table.c.subscriber_id == Subscriber.id)
                .where(delivery_table.c.id == delivery_id)
            ).scalar_one()
        (found,) = [row for row in self._store.deliveries_for(email) if row.id == delivery_id]
        return found

    def add_step_delivery(
        self, enrollment_id: uuid.UUID, step_key: str, *, due_at: datetime, now: datetime
    ) -> uuid.UUID:
        delivery_id = uuid.uuid4()
        with self._engine.begin() as connection:
            subscriber_id = connection.execute(
                select(Enrollment.subscriber_id).where(Enrollment.id == enrollment_id)
            ).scalar_one()
            connection.execute(
                insert(delivery_table).values(
                    id=delivery_id,
                    kind=DeliveryKind.STEP.value,
                    subscriber_id=subscriber_id,
                    enrollment_id=enrollment_id,
                    step_key=step_key,
                    status=DeliveryStatus.QUEUED.value,
                    due_at=due_at,
                    attempts=0,
                    created_at=now,
                )
            )
        return delivery_id


    def queue_confirmation(self, email: str, *, now: datetime) -> uuid.UUID:
        AccountStore(self._engine).signup_pending(
            PendingSignup(email=email, first_name=None, time_zone="UTC", hesitations=frozenset(),
                          discreet=False, locale="en",
                          consent=ConsentRecord(kind="signup", source="tests")),
            now=now,
            resend_interval=timedelta(0),
        )
        (found,) = [row for row in self._store.deliveries_for(email)
                    if row.kind is DeliveryKind.CONFIRMATION and row.status is DeliveryStatus.QUEUED]
        return found.id


class MemoryProbe:
    def __init__(self, store: MemoryStore) -> None:
        self._store = store

    def subscriber_status(self, email: str) -> str:
        status = self._store.subscriber_status(email)
        assert status is not None, "no such subscriber"
        return status.value

    def set_subscriber_status(self, email: str, status: SubscriberStatus) -> None:
        self._store.set_subscriber_status(email, status)

    def delivery(self, delivery_id: uuid.UUID) -> DeliveryView:
        found = self._store.delivery(delivery_id)
        assert found is not None, "no such delivery"
        return found

    def add_step_delivery(
        self, enrollment_id: uuid.UUID, step_key: str, *, due_at: datetime, now: datetime
    ) -> uuid.UUID:
        return self._store.add_step_delivery(enrollment_id, step_key, due_at=due_at, now=now)

    def queue_confirmation(self, email: str, *, now: datetime) -> uuid.UUID:
        return self._store.queue_confirmation(email, now=now)


def probe_for(store: AnyStore) -> StoreProbe:
    return MemoryProbe(store) if isinstance(store, MemoryStore) else SqlProbe(store)


@pytest.fixture(params=STORE_BACKENDS)
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[AnyStore]:
    """A fresh, empty store on each backend: in memory, SQLite and PostgreSQL."""
    if request.param == "memory":
        yield MemoryStore()
        return
    with migrated_database(request.param, request, tmp_path) as url:
        engine = make_engine(url)
        try:
            yield SqlStore(engine)
        finally:
            engine.dispose()


@pytest.fixture
def store_probe(store: AnyStore) -> StoreProbe:
    """The probe for whichever store the test's `store` fixture gives."""
    return probe_for(store)
