"""The delivery's `immediate` flag (a first email due at once after confirming): written with the
enrollment, read back with the claim, never passed on to the next step, the same on every
backend; and migration 0004 gives the rows already queued the send window (false)."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import Boolean, TextClause, Uuid, bindparam, text

from nurture.engine.ports import (
    ConsentRecord,
    DeliveryStatus,
    NewEnrollment,
    NextDelivery,
    Outcome,
)
from nurture.store.database import make_engine, upgrade
from nurture.store.types import UTCDateTime
from tests.support.stores import AnyStore

NOW = datetime(2026, 3, 2, 21, 30, tzinfo=UTC)  # 03:00 in Kolkata
LEASE = timedelta(minutes=5)


def item(email: str, first: NextDelivery) -> NewEnrollment:
    return NewEnrollment(email=email, first_name=None, time_zone="Asia/Kolkata",
                         hesitations=frozenset(), discreet=False, locale="en-IN",
                         sequence_key="partner-hesitant", content_version="v1",
                         first_delivery=first, consent=ConsentRecord(kind="confirm", source="t"))


def test_the_flag_goes_with_the_first_delivery_only(any_store: AnyStore) -> None:
    # One bulk write with both kinds (and a skipped row): each row keeps its own value.
    any_store.enroll([
        item("night@example.org", NextDelivery("welcome", NOW, immediate=True)),
        item("import@example.org", NextDelivery("second", NOW, skipped=(("welcome", "x"),))),
    ], now=NOW)
    claims = any_store.claim_due(now=NOW, owner="a", limit=10, lease=LEASE)
    flags = {c.subscriber.email: c.immediate for c in claims}
    assert flags == {"night@example.org": True, "import@example.org": False}

    night = next(c for c in claims if c.subscriber.email == "night@example.org")
    later = NOW + timedelta(days=2)
    any_store.record([Outcome(night.id, DeliveryStatus.SENT, NOW, count_attempt=True,
                              next_delivery=NextDelivery("why-they-hesitate", later))], owner="a")
    [second] = [c for c in any_store.claim_due(now=later, owner="b", limit=10, lease=LEASE)
                if c.subscriber.email == "night@example.org"]
    assert second.step_key == "why-they-hesitate" and not second.immediate


TYPED = (bindparam("id", type_=Uuid), bindparam("sub", type_=Uuid), bindparam("no", type_=Boolean),
         bindparam("now", type_=UTCDateTime))


def _typed(sql: str) -> TextClause:
    # A text statement, because the models describe the schema after the migration.
    named = set(re.findall(r":(\w+)", sql))
    return text(sql).bindparams(*(param for param in TYPED if param.key in named))


def test_migration_0004_leaves_queued_rows_to_the_window(empty_database_url: str) -> None:
    upgrade(empty_database_url, "0003")
    engine = make_engine(empty_database_url)
    subscriber, delivery = uuid.uuid4(), uuid.uuid4()
    try:
        with engine.begin() as conn:
            conn.execute(_typed(
                "INSERT INTO subscriber (id, email, locale, time_zone, hesitations, discreet, "
                "status, created_at, updated_at) VALUES (:id, 'a@example.org', 'en', 'UTC', '[]', "
                ":no, 'active', :now, :now)"), {"id": subscriber, "no": False, "now": NOW})
            conn.execute(_typed(
                "INSERT INTO delivery (id, kind, subscriber_id, step_key, status, due_at, "
                "attempts, created_at) VALUES (:id, 'step', :sub, 'welcome', 'queued', :now, 0, "
                ":now)"), {"id": delivery, "sub": subscriber, "now": NOW})
        upgrade(empty_database_url)
        with engine.connect() as conn:
            flags = conn.execute(text("SELECT immediate FROM delivery")).scalars().all()
        assert [bool(flag) for flag in flags] == [False]
    finally:
        engine.dispose()
