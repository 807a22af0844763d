"""What the store and engine tell a progress callback, on SQLite and PostgreSQL: enrollment in
slices inside one transaction, key rotation, and the retention purge the scheduler and
`nurture db purge` share."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from sqlalchemy import update

from nurture.engine.enrollment import read_people_csv
from nurture.engine.ports import ConsentRecord, NewEnrollment, NextDelivery
from nurture.services.retention import purge_expired
from nurture.store.models import Subscriber
from nurture.store.rotation import rotate_data_keys
from nurture.store.sql.enrollments import SLICE
from nurture.store.sql.store import SqlStore
from tests.support.cli import write_csv
from tests.support.clock import T0


class Reports(list[tuple[int, int]]):
    def __call__(self, done: int, total: int) -> None:
        self.append((done, total))


def _item(email: str) -> NewEnrollment:
    return NewEnrollment(email=email, first_name="P", time_zone="UTC", hesitations=frozenset(),
                         discreet=False, locale="en", sequence_key="sample", content_version="v",
                         first_delivery=NextDelivery("welcome", T0),
                         consent=ConsentRecord(kind="import", source="test"))


def test_enrollment_reports_each_slice_and_refuses_a_repeat_across_slices(
        store: SqlStore) -> None:
    emails = [f"p{i}@example.org" for i in range(SLICE * 2 + 100)]
    emails.append(emails[3])  # in the last slice, the same address as in the first
    reports = Reports()
    results = store.enroll([_item(email) for email in emails], now=T0, progress=reports)
    total = len(emails)
    assert reports == [(SLICE, total), (SLICE * 2, total), (total, total)]
    assert sum(result.created for result in results) == total - 1
    assert [result.reason for result in results if not result.created] == ["already enrolled"]


def test_csv_reading_reports_every_thousand_rows_and_ends_at_the_true_count(
        tmp_path: Path) -> None:
    reports = Reports()
    people, errors = read_people_csv(write_csv(tmp_path / "people.csv", 2500), reports)
    assert (len(people), errors) == (2500, [])
    assert reports == [(1000, 2500), (2000, 2500), (2500, 2500)]


def test_rotation_reports_each_batch(store: SqlStore) -> None:
    store.enroll([_item(f"p{i}@example.org") for i in range(25)], now=T0)
    reports = Reports()
    assert rotate_data_keys(store.engine, batch=10, progress=reports) == 25
    assert reports == [(10, 25), (20, 25), (25, 25)]


def test_the_shared_purge_uses_now_minus_retention_and_reports_both_phases(
        store: SqlStore) -> None:
    store.enroll([_item(f"p{i}@example.org") for i in range(6)], now=T0)
    with store.engine.begin() as conn:
        for emails, at in ((["p0", "p1", "p2"], T0), (["p3"], T0 + timedelta(days=20))):
            conn.execute(update(Subscriber).where(
                Subscriber.email.in_([f"{name}@example.org" for name in emails])
            ).values(status="unsubscribed", updated_at=at))
    departed, unconfirmed = Reports(), Reports()
    purged = purge_expired(store.engine, now=T0 + timedelta(days=31),
                           retention=timedelta(days=30), departed_progress=departed,
                           unconfirmed_progress=unconfirmed)
    assert (purged.departed, purged.unconfirmed) == (3, 0)
    assert purged.cutoff == T0 + timedelta(days=1)
    assert (departed, unconfirmed) == ([(3, 3)], [(0, 0)])
    again = purge_expired(store.engine, now=T0 + timedelta(days=51), retention=timedelta(days=30))
    assert again.departed == 1, "the one who left later is purged once old enough too"
