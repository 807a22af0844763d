"""The click counts in the database, on SQLite and PostgreSQL: one row per delivery, upserted; no
row for a delivery that is gone; the retention purge by last click; erasure and the purge of
unconfirmed signups delete them, even on a SQLite connection without its foreign-key pragma."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from sqlalchemy import Engine, event, func, select

from nurture.store.accounts.store import AccountStore
from nurture.store.accounts.types import ConsentRecord, PendingSignup
from nurture.store.clicks import clicks_of, purge_clicks, record_click
from nurture.store.database import make_engine
from nurture.store.models import Delivery, click_count_table
from tests.support.clock import T0


def a_delivery(engine: Engine, email: str = "reader@example.org") -> tuple[uuid.UUID, uuid.UUID]:
    """A pending signup's confirmation delivery: (subscriber, delivery)."""
    result = AccountStore(engine).signup_pending(
        PendingSignup(email=email, first_name=None, time_zone="UTC", hesitations=frozenset(),
                      discreet=False, locale="en", consent=ConsentRecord(kind="signup", source="tests")),
        now=T0, resend_interval=timedelta(0))
    assert result.subscriber_id is not None
    with engine.connect() as conn:
        delivery = conn.scalar(select(Delivery.id).where(Delivery.subscriber_id == result.subscriber_id))
    assert delivery is not None
    return result.subscriber_id, delivery


def count_rows(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.scalar(select(func.count()).select_from(click_count_table)) or 0)


def test_clicks_are_counted_per_delivery(engine: Engine) -> None:
    _, first = a_delivery(engine, "one@example.org")
    _, second = a_delivery(engine, "two@example.org")
    assert record_click(engine, first, T0)
    assert record_click(engine, first, T0 + timedelta(minutes=5))
    assert record_click(engine, second, T0 + timedelta(minutes=7))
    one, two = clicks_of(engine, first), clicks_of(engine, second)
    assert one is not None and (one.clicks, one.first_at, one.last_at) == (
        2, T0, T0 + timedelta(minutes=5))
    assert two is not None and two.clicks == 1
    assert count_rows(engine) == 2


def test_a_click_on_a_delivery_that_is_gone_counts_nothing(engine: Engine) -> None:
    assert not record_click(engine, uuid.uuid4(), T0)
    assert count_rows(engine) == 0
    with pytest.raises(ValueError):
        record_click(engine, uuid.uuid4(), T0.replace(tzinfo=None))


def test_the_purge_deletes_counts_by_their_last_click(engine: Engine) -> None:
    _, old = a_delivery(engine, "old@example.org")
    _, recent = a_delivery(engine, "recent@example.org")
    record_click(engine, old, T0)
    record_click(engine, recent, T0)
    record_click(engine, recent, T0 + timedelta(days=10))
    assert purge_clicks(engine, older_than=T0) == 0
    assert purge_clicks(engine, older_than=T0 + timedelta(days=1)) == 1
    assert clicks_of(engine, old) is None and clicks_of(engine, recent) is not None


# Only SQLite can run with foreign keys off; PostgreSQL always enforces them.
@pytest.mark.parametrize(("database_url", "foreign_keys"),
                         [("sqlite", "ON"), ("sqlite", "OFF"), ("postgresql", "always")],
                         indirect=["database_url"])
def test_erasure_and_the_unconfirmed_purge_take_the_counts(database_url: str,
                                                          foreign_keys: str) -> None:
    engine = make_engine(database_url)
    if engine.dialect.name == "sqlite":
        @event.listens_for(engine, "connect")
        def _pragma(dbapi_connection: object, record: object) -> None:
            cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
            cursor.execute(f"PRAGMA foreign_keys={foreign_keys}")
            cursor.close()
    try:
        erased, erased_delivery = a_delivery(engine, "erased@example.org")
        _, unconfirmed_delivery = a_delivery(engine, "unconfirmed@example.org")
        _, kept_delivery = a_delivery(engine, "kept@example.org")
        for delivery in (erased_delivery, unconfirmed_delivery, kept_delivery):
            record_click(engine, delivery, T0)
        accounts = AccountStore(engine)
        assert accounts.erase(erased, now=T0)
        assert clicks_of(engine, erased_delivery) is None
        # Both pending signups left untouched since T0; the kept one is touched again just now.
        accounts.signup_pending(
            PendingSignup(email="kept@example.org", first_name=None, time_zone="UTC",
                          hesitations=frozenset(), discreet=False, locale="en",
                          consent=ConsentRecord(kind="signup", source="tests")),
            now=T0 + timedelta(days=40), resend_interval=timedelta(0))
        assert accounts.purge_unconfirmed(older_than=T0 + timedelta(days=30)) == 1
        assert clicks_of(engine, unconfirmed_delivery) is None
        assert clicks_of(engine, kept_delivery) is not None
    finally:
        engine.dispose()
