"""The storage contract: leases, outcomes, suppression and enrollment, the same on every backend.

Each test runs on MemoryStore, SqlStore on SQLite and SqlStore on PostgreSQL (the `store` fixture),
reading what the ports do not show through `store_probe`. The tests at the end are SQL-only and say
why: concurrency between engines, statement batching, bulk speed.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine

from nurture.engine.ports import (
    ConsentRecord,
    DeliveryKind,
    DeliveryStatus,
    EnrollmentStatus,
    LiveState,
    NewEnrollment,
    NextDelivery,
    Outcome,
    SubscriberStatus,
)
from nurture.store.database import make_engine
from nurture.store.sql.bulk import SQLITE_IN_CHUNK
from nurture.store.sql.store import SqlStore
from tests.support.stores import AnyStore, StoreProbe

NOW = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)
LEASE = timedelta(minutes=5)
SEQUENCE = "partner-hesitant"


def new_enrollment(
    email: str,
    *,
    due_at: datetime | None = NOW,
    sequence: str = SEQUENCE,
    step: str = "welcome",
    consent_kind: str = "import",
) -> NewEnrollment:
    return NewEnrollment(
        email=email,
        first_name="Sam",
        time_zone="Europe/Paris",
        hesitations=frozenset({"stigma", "fear_of_blame"}),
        discreet=False,
        locale="en",
        sequence_key=sequence,
        content_version="v1",
        first_delivery=None if due_at is None else NextDelivery(step_key=step, due_at=due_at),
        consent=ConsentRecord(kind=consent_kind, source="tests"),
    )


@pytest.fixture
def store(any_store: AnyStore) -> AnyStore:
    """Memory, SQLite and PostgreSQL: every test here that takes `store` runs on all three."""
    return any_store


def enroll_one(store: AnyStore, email: str, **kwargs: object) -> uuid.UUID:
    (result,) = store.enroll([new_enrollment(email, **kwargs)], now=NOW)  # type: ignore[arg-type]
    assert result.created, result.reason
    assert result.enrollment_id is not None
    return result.enrollment_id


def test_claim_returns_due_rows_only_and_sets_leases(store: AnyStore) -> None:
    enroll_one(store, "early@example.org", due_at=NOW - timedelta(hours=1))
    enroll_one(store, "now@example.org", due_at=NOW)
    enroll_one(store, "later@example.org", due_at=NOW + timedelta(seconds=1))

    claimed = store.claim_due(now=NOW, owner="a", limit=10, lease=LEASE)

    assert [item.subscriber.email for item in claimed] == ["early@example.org", "now@example.org"]
    first = claimed[0]
    assert first.kind is DeliveryKind.STEP
    assert first.step_key == "welcome"
    assert first.attempts == 0
    assert first.due_at == NOW - timedelta(hours=1)
    assert first.due_at.tzinfo is not None
    assert first.subscriber.hesitations == frozenset({"stigma", "fear_of_blame"})
    assert first.subscriber.status is SubscriberStatus.ACTIVE
    assert first.subscriber.time_zone == "Europe/Paris"
    assert first.suppressed is False
    assert first.enrollment is not None
    assert first.enrollment.sequence_key == SEQUENCE
    assert first.enrollment.status is EnrollmentStatus.ACTIVE
    assert first.enrollment.done_step_keys == frozenset()
    assert first.enrollment.enrolled_at == NOW

    (row,) = store.deliveries_for("early@example.org")
    assert row.status is DeliveryStatus.SENDING
    assert row.lease_owner == "a"
    assert row.lease_expires_at == NOW + LEASE
    assert store.deliveries_for("later@example.org")[0].status is DeliveryStatus.QUEUED

    assert store.claim_due(now=NOW, owner="b", limit=10, lease=LEASE) == []
    assert store.claim_due(now=NOW, owner="a", limit=0, lease=LEASE) == []


def test_claim_respects_limit_and_due_order(store: AnyStore) -> None:
    for minutes in (3, 1, 2):
        enroll_one(store, f"m{minutes}@example.org", due_at=NOW - timedelta(minutes=minutes))
    claimed = store.claim_due(now=NOW, owner="a", limit=2, lease=LEASE)
    assert [item.subscriber.email for item in claimed] == ["m3@example.org", "m2@example.org"]


def test_naive_now_is_refused(store: AnyStore) -> None:
    with pytest.raises(ValueError, match="aware"):
        store.claim_due(now=datetime(2025, 1, 1), owner="a", limit=1, lease=LEASE)


def test_an_expired_lease_is_claimable_again(store: AnyStore) -> None:
    enroll_one(store, "crash@example.org")
    (held,) = store.claim_due(now=NOW, owner="a", limit=10, lease=LEASE)

    assert (
        store.claim_due(now=NOW + LEASE - timedelta(seconds=1), owner="b", limit=10, lease=LEASE)
        == []
    )
    (taken,) = store.claim_due(now=NOW + LEASE, owner="b", limit=10, lease=LEASE)

    assert taken.id == held.id
    (row,) = store.deliveries_for("crash@example.org")
    assert row.lease_owner == "b"
    assert row.lease_expires_at == NOW + 2 * LEASE


def test_reap_expired_returns_leases_to_the_queue(store: AnyStore) -> None:
    enroll_one(store, "reap@example.org")
    store.claim_due(now=NOW, owner="a", limit=10, lease=LEASE)

    assert store.reap_expired(NOW + LEASE - timedelta(seconds=1)) == 0
    assert store.reap_expired(NOW + LEASE) == 1

    (row,) = store.deliveries_for("reap@example.org")
    assert row.status is DeliveryStatus.QUEUED
    assert row.lease_owner is None
    assert row.lease_expires_at is None
    assert len(store.claim_due(now=NOW + LEASE, owner="b", limit=10, lease=LEASE)) == 1


def test_holding_a_destination_moves_its_waiting_rows_past_the_hold(store: AnyStore) -> None:
    for email, due in (("ana@gmail.com", NOW), ("bo@googlemail.com", NOW - timedelta(hours=1)),
                       ("cy@gmail.com", NOW + timedelta(hours=1)), ("dee@example.org", NOW),
                       ("eve@notgmail.com", NOW), ("fay@gmail.com", NOW)):
        enroll_one(store, email, due_at=due)
    (leased,) = store.claim_due(now=NOW, owner="a", limit=1, lease=LEASE)
    assert leased.subscriber.email == "bo@googlemail.com"
    until = NOW + timedelta(seconds=30)

    moved = store.hold_destination(["gmail.com", "googlemail.com"], until=until,
                                   reason="held: gmail asked us to slow down")

    # Not what is leased (its sender holds it one by one), nor what falls due after the hold,
    # nor another domain whose name merely ends alike.
    assert moved == 2
    for email in ("ana@gmail.com", "fay@gmail.com"):
        (row,) = store.deliveries_for(email)
        assert (row.status, row.due_at, row.last_error) == \
            (DeliveryStatus.QUEUED, until, "held: gmail asked us to slow down")
    assert store.deliveries_for("cy@gmail.com")[0].due_at == NOW + timedelta(hours=1)
    assert store.deliveries_for("bo@googlemail.com")[0].status is DeliveryStatus.SENDING
    claimed = store.claim_due(now=NOW, owner="b", limit=10, lease=LEASE)
    assert sorted(claim.subscriber.email for claim in claimed) == \
        ["dee@example.org", "eve@notgmail.com"]


def test_record_sent_queues_the_next_step_and_updates_the_enrollment(store: AnyStore) -> None:
    enroll_one(store, "sent@example.org")
    (held,) = store.claim_due(now=NOW, owner="a", limit=10, lease=LEASE)
    sent_at = NOW + timedelta(seconds=2)
    store.record(
        [
            Outcome(
                delivery_id=held.id,
                status=DeliveryStatus.SENT,
                at=sent_at,
                smtp_code=250,
                message_id="<welcome.1@nurture.localhost>",
                content_version="v2",
                count_attempt=True,
                next_delivery=NextDelivery(
                    step_key="story",
                    due_at=NOW + timedelta(days=3),
                    skipped=(("discreet-tip", "condition discreet true not met"),),
                ),
            )
        ],
        owner="a",
    )

    rows = {row.step_key: row for row in store.deliveries_for("sent@example.org")}
    assert set(rows) == {"welcome", "discreet-tip", "story"}
    welcome = rows["welcome"]
    assert welcome.status is DeliveryStatus.SENT
    assert welcome.sent_at == sent_at
    assert welcome.smtp_code == 250
    assert welcome.message_id == "<welcome.1@nurture.localhost>"
    assert welcome.attempts == 1
    assert welcome.lease_owner is None
    assert welcome.content_version == "v2"
    assert rows["discreet-tip"].status is DeliveryStatus.SKIPPED
    assert rows["discreet-tip"].skip_reason == "condition discreet true not met"
    assert rows["story"].status is DeliveryStatus.QUEUED
    assert rows["story"].due_at == NOW + timedelta(days=3)
    assert rows["story"].sequence_key == SEQUENCE

    (enrollment,) = store.enrollments_for("sent@example.org")
    assert enrollment.last_step_key == "welcome"
    assert enrollment.last_sent_at == sent_at
    assert enrollment.status is EnrollmentStatus.ACTIVE

    (story,) = store.claim_due(now=NOW + timedelta(days=3), owner="a", limit=10, lease=LEASE)
    assert story.step_key == "story"
    assert story.enrollment is not None
    assert story.enrollment.done_step_keys == frozenset({"welcome", "discreet-tip"})
    assert story.enrollment.last_sent_at == sent_at


def test_record_completed_ends_the_enrollment(store: AnyStore) -> None:
    enroll_one(store, "done@example.org")
    (held,) = store.claim_due(now=NOW, owner="a", limit=10, lease=LEASE)
    store.record(
        [
            Outcome(
                delivery_id=held.id,
                status=DeliveryStatus.SENT,
                at=NOW,
                end_enrollment=EnrollmentStatus.COMPLETED,
                end_reason="last step sent",
            )
        ],
        owner="a",
    )
    (enrollment,) = store.enrollments_for("done@example.org")
    assert enrollment.status is EnrollmentStatus.COMPLETED
    assert enrollment.ended_at == NOW
    assert enrollment.end_reason == "last step sent"


def test_a_duplicate_next_delivery_is_ignored(store: AnyStore, store_probe: StoreProbe) -> None:
    enrollment_id = enroll_one(store, "twice@example.org")
    (first,) = store.claim_due(now=NOW, owner="a", limit=10, lease=LEASE)
    # A second step row of the same enrollment, so two outcomes in one batch race for "story".
    store_probe.add_step_delivery(enrollment_id, "welcome-extra", due_at=NOW, now=NOW)
    (second,) = store.claim_due(now=NOW, owner="a", limit=10, lease=LEASE)

    store.record(
        [
            Outcome(
                delivery_id=held.id,
                status=DeliveryStatus.SENT,
                at=NOW,
                next_delivery=NextDelivery(step_key="story", due_at=NOW + timedelta(days=day)),
            )
            for day, held in ((1, first), (2, second))
        ],
        owner="a",
    )
    # A later outcome that queues a step already present (and skips one already sent) is a no-op.
    (story,) = store.claim_due(now=NOW + timedelta(days=1), owner="a", limit=10, lease=LEASE)
    store.record(
        [
            Outcome(
                delivery_id=story.id,
                status=DeliveryStatus.SENT,
                at=NOW + timedelta(days=1),
                next_delivery=NextDelivery(
                    step_key="story",
                    due_at=NOW + timedelta(days=9),
                    skipped=(("welcome", "should not overwrite"),),
                ),
            )
        ],
        owner="a",
    )

    rows = store.deliveries_for("twice@example.org")
    assert sorted(row.step_key or "" for row in rows) == ["story", "welcome", "welcome-extra"]
    by_step = {row.step_key: row for row in rows}
    assert by_step["story"].status is DeliveryStatus.SENT
    assert by_step["story"].due_at == NOW + timedelta(days=1)
    assert by_step["welcome"].status is DeliveryStatus.SENT
    assert by_step["welcome"].skip_reason is None


def test_record_by_a_non_owner_changes_nothing(
    store: AnyStore, caplog: pytest.LogCaptureFixture
) -> None:
    enroll_one(store, "lease@example.org")
    (held,) = store.claim_due(now=NOW, owner="a", limit=10, lease=LEASE)

    with caplog.at_level(logging.WARNING, logger="nurture.store"):
        store.record(
            [
                Outcome(
                    delivery_id=held.id,
                    status=DeliveryStatus.BOUNCED,
                    at=NOW,
                    smtp_code=550,
                    count_attempt=True,
                    end_enrollment=EnrollmentStatus.EXITED,
                    end_reason="bounced",
                    suppress_reason="550 no such user",
                    next_delivery=None,
                )
            ],
            owner="b",
        )

    (row,) = store.deliveries_for("lease@example.org")
    assert row.status is DeliveryStatus.SENDING
    assert row.lease_owner == "a"
    assert row.attempts == 0
    assert row.smtp_code is None
    assert store.enrollments_for("lease@example.org")[0].status is EnrollmentStatus.ACTIVE
    assert not store.is_suppressed("lease@example.org")
    assert str(held.id) in caplog.text
    assert "lease@example.org" not in caplog.text


def test_record_deferred_reschedules_and_counts_the_attempt(store: AnyStore) -> None:
    enroll_one(store, "later@example.org")
    (held,) = store.claim_due(now=NOW, owner="a", limit=10, lease=LEASE)
    retry_at = NOW + timedelta(minutes=2)
    store.record(
        [
            Outcome(
                delivery_id=held.id,
                status=DeliveryStatus.DEFERRED,
                at=NOW,
                due_at=retry_at,
                smtp_code=451,
                error="451 try again later",
                count_attempt=True,
            )
        ],
        owner="a",
    )
    (row,) = store.deliveries_for("later@example.org")
    assert row.status is DeliveryStatus.DEFERRED
    assert row.due_at == retry_at
    assert row.attempts == 1
    assert row.last_error == "451 try again later"
    assert row.lease_owner is None

    assert (
        store.claim_due(now=retry_at - timedelta(seconds=1), owner="a", limit=10, lease=LEASE) == []
    )
    (again,) = store.claim_due(now=retry_at, owner="a", limit=10, lease=LEASE)
    assert again.attempts == 1


def test_contradictory_outcomes_are_refused_before_writing(store: AnyStore) -> None:
    enroll_one(store, "bad@example.org")
    (held,) = store.claim_due(now=NOW, owner="a", limit=10, lease=LEASE)
    with pytest.raises(ValueError, match="next_delivery"):
        store.record(
            [
                Outcome(
                    delivery_id=held.id,
                    status=DeliveryStatus.DEFERRED,
                    at=NOW,
                    next_delivery=NextDelivery(step_key="story", due_at=NOW),
                )
            ],
            owner="a",
        )
    assert store.deliveries_for("bad@example.org")[0].status is DeliveryStatus.SENDING


def test_suppress_reason_suppresses_and_ends_every_enrollment(
    store: AnyStore, store_probe: StoreProbe
) -> None:
    email = "gone@example.org"
    enroll_one(store, email, sequence="first")
    enroll_one(store, email, sequence="second", due_at=NOW + timedelta(days=1))
    (held,) = store.claim_due(now=NOW, owner="a", limit=10, lease=LEASE)

    store.record(
        [
            Outcome(
                delivery_id=held.id,
                status=DeliveryStatus.BOUNCED,
                at=NOW,
                smtp_code=550,
                error="550 5.1.1 no such user",
                count_attempt=True,
                suppress_reason="hard bounce",
            )
        ],
        owner="a",
    )

    assert store.is_suppressed(email)
    assert store.is_suppressed(" GONE@example.org ")
    assert store_probe.subscriber_status(email) == SubscriberStatus.BOUNCED.value
    enrollments = store.enrollments_for(email)
    assert {item.status for item in enrollments} == {EnrollmentStatus.EXITED}
    assert {item.end_reason for item in enrollments} == {"hard bounce"}
    bounced = store_probe.delivery(held.id)
    assert bounced.status is DeliveryStatus.BOUNCED
    assert bounced.last_error == "550 5.1.1 no such user"

    # The other sequence's delivery is still in the queue; the dispatcher sees it is suppressed.
    (other,) = store.claim_due(now=NOW + timedelta(days=1), owner="a", limit=10, lease=LEASE)
    assert other.suppressed
    assert other.subscriber.status is SubscriberStatus.BOUNCED

    (again,) = store.enroll([new_enrollment(email, sequence="third")], now=NOW)
    assert not again.created
    assert again.reason == "suppressed"


def test_release_gives_leases_back_to_the_owner_only(store: AnyStore) -> None:
    enroll_one(store, "r1@example.org")
    enroll_one(store, "r2@example.org")
    first, _ = store.claim_due(now=NOW, owner="a", limit=10, lease=LEASE)

    store.release([first.id], owner="b")
    assert store.counts_by_status()["sending"] == 2

    store.release([first.id], owner="a")
    (row,) = store.deliveries_for(first.subscriber.email)
    assert row.status is DeliveryStatus.QUEUED
    assert row.lease_owner is None
    assert row.lease_expires_at is None

    assert store.release_all("a") == 1
    counts = store.counts_by_status()
    assert counts["queued"] == 2
    assert counts["sending"] == 0
    assert len(store.claim_due(now=NOW, owner="b", limit=10, lease=LEASE)) == 2


def test_enroll_rejects_duplicates_suppressed_and_departed_subscribers(
    store: AnyStore, store_probe: StoreProbe
) -> None:
    enroll_one(store, "left@example.org", sequence="first", due_at=None)
    store_probe.set_subscriber_status("left@example.org", SubscriberStatus.UNSUBSCRIBED)
    enroll_one(store, "bounced@example.org")
    (held,) = store.claim_due(now=NOW, owner="a", limit=10, lease=LEASE)
    store.record(
        [
            Outcome(
                delivery_id=held.id, status=DeliveryStatus.BOUNCED, at=NOW, suppress_reason="550"
            )
        ],
        owner="a",
    )

    results = store.enroll(
        [
            new_enrollment("fresh@example.org"),
            new_enrollment("fresh@example.org"),
            new_enrollment("fresh@example.org", sequence="other"),
            new_enrollment("bounced@example.org", sequence="other"),
            new_enrollment("left@example.org", sequence="second"),
            new_enrollment("left@example.org", sequence="third", consent_kind="resubscribe"),
        ],
        now=NOW,
    )

    assert [(result.created, result.reason) for result in results] == [
        (True, ""),
        (False, "already enrolled"),
        (True, ""),
        (False, "suppressed"),
        (False, "subscriber unsubscribed"),
        (True, ""),
    ]
    assert results[0].subscriber_id == results[1].subscriber_id == results[2].subscriber_id
    assert results[1].enrollment_id is None
    assert store_probe.subscriber_status("left@example.org") == SubscriberStatus.ACTIVE.value
    assert {item.sequence_key for item in store.enrollments_for("fresh@example.org")} == {
        SEQUENCE,
        "other",
    }
    (again,) = store.enroll([new_enrollment("fresh@example.org")], now=NOW)
    assert (again.created, again.reason) == (False, "already enrolled")


def test_record_held_back_requeues_at_the_new_time(store: AnyStore) -> None:
    enroll_one(store, "held@example.org")
    (held,) = store.claim_due(now=NOW, owner="a", limit=10, lease=LEASE)
    store.record(
        [Outcome(delivery_id=held.id, status=DeliveryStatus.QUEUED, at=NOW,
                 due_at=NOW + timedelta(hours=2))],
        owner="a",
    )
    (row,) = store.deliveries_for("held@example.org")
    assert row.status is DeliveryStatus.QUEUED
    assert row.due_at == NOW + timedelta(hours=2)
    assert row.attempts == 0
    assert row.lease_owner is None
    assert row.lease_expires_at is None


def test_record_skipped_keeps_the_reason_apart_from_errors(store: AnyStore) -> None:
    enroll_one(store, "skip@example.org")
    (held,) = store.claim_due(now=NOW, owner="a", limit=10, lease=LEASE)
    store.record(
        [
            Outcome(
                delivery_id=held.id,
                status=DeliveryStatus.SKIPPED,
                at=NOW,
                error="condition discreet true not met",
                next_delivery=NextDelivery(step_key="story", due_at=NOW + timedelta(days=1)),
            )
        ],
        owner="a",
    )
    rows = {row.step_key: row for row in store.deliveries_for("skip@example.org")}
    assert rows["welcome"].status is DeliveryStatus.SKIPPED
    assert rows["welcome"].skip_reason == "condition discreet true not met"
    assert rows["welcome"].last_error is None
    assert rows["welcome"].sent_at is None
    assert rows["story"].status is DeliveryStatus.QUEUED

    (story,) = store.claim_due(now=NOW + timedelta(days=1), owner="a", limit=10, lease=LEASE)
    assert story.enrollment is not None
    assert story.enrollment.done_step_keys == frozenset({"welcome"})
    assert story.enrollment.last_sent_at is None
    assert store.enrollments_for("skip@example.org")[0].last_step_key is None


def test_outcomes_that_cannot_apply_are_refused_before_writing(store: AnyStore) -> None:
    enroll_one(store, "odd@example.org")
    (held,) = store.claim_due(now=NOW, owner="a", limit=10, lease=LEASE)
    sent = Outcome(delivery_id=held.id, status=DeliveryStatus.SENT, at=NOW)
    refused = [
        ([sent, sent], "two outcomes"),
        ([Outcome(delivery_id=held.id, status=DeliveryStatus.SENDING, at=NOW)], "SENDING"),
        (
            [Outcome(delivery_id=held.id, status=DeliveryStatus.SENT, at=NOW,
                     end_enrollment=EnrollmentStatus.PAUSED)],
            "end_enrollment",
        ),
        ([Outcome(delivery_id=held.id, status=DeliveryStatus.SENT, at=datetime(2025, 3, 3))],
         "aware"),
    ]
    for outcomes, message in refused:
        with pytest.raises(ValueError, match=message):
            store.record(outcomes, owner="a")
    (row,) = store.deliveries_for("odd@example.org")
    assert row.status is DeliveryStatus.SENDING
    assert row.lease_owner == "a"
    store.record([], owner="a")


def test_an_ended_enrollment_keeps_its_first_end_and_queues_nothing(
    store: AnyStore, store_probe: StoreProbe
) -> None:
    enroll_one(store, "end@example.org")
    enroll_one(store, "late@example.org")
    claimed = {
        item.subscriber.email: item
        for item in store.claim_due(now=NOW, owner="a", limit=10, lease=LEASE)
    }
    # A complaint lands while the second is leased: leased rows are left to the dispatcher.
    late = claimed["late@example.org"]
    store.suppress_subscribers(
        {late.subscriber.id: "abuse"}, status=SubscriberStatus.COMPLAINED, now=NOW
    )
    assert store_probe.delivery(late.id).status is DeliveryStatus.SENDING

    sent_at = NOW + timedelta(seconds=1)
    store.record(
        [
            Outcome(
                delivery_id=claimed[email].id,
                status=DeliveryStatus.SENT,
                at=sent_at,
                next_delivery=NextDelivery(step_key="story", due_at=NOW + timedelta(days=1)),
                end_enrollment=end,
                end_reason=reason,
            )
            for email, end, reason in (
                ("end@example.org", EnrollmentStatus.EXITED, "converted"),
                ("late@example.org", EnrollmentStatus.COMPLETED, "last step sent"),
            )
        ],
        owner="a",
    )

    for email, reason in (("end@example.org", "converted"), ("late@example.org", "complained")):
        assert [row.step_key for row in store.deliveries_for(email)] == ["welcome"]
        (enrollment,) = store.enrollments_for(email)
        assert enrollment.status is EnrollmentStatus.EXITED
        assert enrollment.end_reason == reason
        assert enrollment.last_step_key == "welcome"
        assert enrollment.last_sent_at == sent_at
    assert store.enrollments_for("late@example.org")[0].ended_at == NOW


def test_recheck_renews_the_owners_leases_and_reads_the_live_state(
    store: AnyStore, store_probe: StoreProbe
) -> None:
    enroll_one(store, "stay@example.org")
    enroll_one(store, "leave@example.org")
    claimed = {
        item.subscriber.email: item
        for item in store.claim_due(now=NOW, owner="a", limit=10, lease=LEASE)
    }
    stay, leave = claimed["stay@example.org"], claimed["leave@example.org"]
    store_probe.set_subscriber_status("leave@example.org", SubscriberStatus.UNSUBSCRIBED)
    later = NOW + timedelta(minutes=4)

    states = store.recheck([stay.id, leave.id, uuid.uuid4()], owner="a", now=later, lease=LEASE)

    assert set(states) == {stay.id, leave.id}
    assert states[stay.id] == LiveState(
        subscriber_status=SubscriberStatus.ACTIVE,
        suppressed=False,
        enrollment_status=EnrollmentStatus.ACTIVE,
        paused_until=None,
    )
    assert states[leave.id].subscriber_status is SubscriberStatus.UNSUBSCRIBED
    assert store_probe.delivery(stay.id).lease_expires_at == later + LEASE
    # The renewed lease outlives the first one: nobody takes the rows when it would have ended.
    assert store.claim_due(now=NOW + LEASE, owner="b", limit=10, lease=LEASE) == []
    assert store.recheck([stay.id], owner="b", now=later, lease=LEASE) == {}
    assert store_probe.delivery(stay.id).lease_owner == "a"
    assert store.recheck([], owner="a", now=later, lease=LEASE) == {}
    with pytest.raises(ValueError, match="aware"):
        store.recheck([stay.id], owner="a", now=datetime(2025, 3, 3), lease=LEASE)


def test_feedback_suppresses_ends_enrollments_and_skips_waiting_rows(
    store: AnyStore, store_probe: StoreProbe
) -> None:
    tomorrow = NOW + timedelta(days=1)
    for name in ("hard", "left", "angry"):
        enroll_one(store, f"{name}@example.org", due_at=tomorrow)
    store_probe.set_subscriber_status("left@example.org", SubscriberStatus.UNSUBSCRIBED)
    (angry_row,) = store.deliveries_for("angry@example.org")

    by_email, by_delivery = store.feedback_targets(
        emails=[" HARD@example.org ", "left@example.org", "nobody@example.org"],
        delivery_ids=[angry_row.id, uuid.uuid4()],
    )

    assert set(by_email) == {"hard@example.org", "left@example.org"}
    assert set(by_delivery) == {angry_row.id}
    hard, left = by_email["hard@example.org"], by_email["left@example.org"]
    angry = by_delivery[angry_row.id]

    bounced = SubscriberStatus.BOUNCED
    assert store.suppress_subscribers({hard: "550 5.1.1", left: "550"}, status=bounced, now=NOW) == 2
    assert store_probe.subscriber_status("hard@example.org") == "bounced"
    # A bounce leaves an unsubscribe as it is: that records what the person said.
    assert store_probe.subscriber_status("left@example.org") == "unsubscribed"
    assert store.is_suppressed("hard@example.org") and store.is_suppressed("left@example.org")
    (enrollment,) = store.enrollments_for("hard@example.org")
    assert (enrollment.status, enrollment.end_reason) == (EnrollmentStatus.EXITED, "bounced")
    assert enrollment.ended_at == NOW
    (row,) = store.deliveries_for("hard@example.org")
    assert (row.status, row.skip_reason) == (DeliveryStatus.SKIPPED, "bounced")
    assert store.claim_due(now=tomorrow, owner="a", limit=10, lease=LEASE)[0].id == angry_row.id

    assert store.suppress_subscribers({hard: "again"}, status=bounced, now=NOW) == 0
    complained = SubscriberStatus.COMPLAINED
    assert store.suppress_subscribers({left: "abuse", angry: "abuse"}, status=complained,
                                      now=NOW) == 1
    # A complaint overrides an unsubscribe; a leased row is left to the dispatcher.
    assert store_probe.subscriber_status("left@example.org") == "complained"
    assert store_probe.subscriber_status("angry@example.org") == "complained"
    assert store_probe.delivery(angry_row.id).status is DeliveryStatus.SENDING
    (enrollment,) = store.enrollments_for("angry@example.org")
    assert (enrollment.status, enrollment.end_reason) == (EnrollmentStatus.EXITED, "complained")

    assert store.suppress_subscribers({}, status=bounced, now=NOW) == 0
    with pytest.raises(ValueError, match="BOUNCED or COMPLAINED"):
        store.suppress_subscribers({angry: "x"}, status=SubscriberStatus.UNSUBSCRIBED, now=NOW)
    with pytest.raises(ValueError, match="aware"):
        store.suppress_subscribers({angry: "x"}, status=bounced, now=datetime(2025, 3, 3))


def test_a_confirmation_email_belongs_to_no_enrollment(
    store: AnyStore, store_probe: StoreProbe
) -> None:
    delivery_id = store_probe.queue_confirmation("new@example.org", now=NOW)
    (claimed,) = store.claim_due(now=NOW, owner="a", limit=10, lease=LEASE)
    assert claimed.id == delivery_id
    assert claimed.kind is DeliveryKind.CONFIRMATION
    assert (claimed.enrollment, claimed.step_key) == (None, None)
    assert claimed.subscriber.status is SubscriberStatus.PENDING

    with pytest.raises(ValueError, match="no enrollment"):
        store.record(
            [Outcome(delivery_id=delivery_id, status=DeliveryStatus.SENT, at=NOW,
                     next_delivery=NextDelivery(step_key="welcome", due_at=NOW))],
            owner="a",
        )
    assert store_probe.delivery(delivery_id).status is DeliveryStatus.SENDING
    (state,) = store.recheck([delivery_id], owner="a", now=NOW, lease=LEASE).values()
    assert (state.subscriber_status, state.enrollment_status) == (SubscriberStatus.PENDING, None)

    store.record(
        [Outcome(delivery_id=delivery_id, status=DeliveryStatus.SENT, at=NOW,
                 message_id="<confirm@nurture.localhost>", end_enrollment=EnrollmentStatus.EXITED)],
        owner="a",
    )
    row = store_probe.delivery(delivery_id)
    assert (row.status, row.sequence_key, row.sent_at) == (DeliveryStatus.SENT, None, NOW)
    assert row.message_id == "<confirm@nurture.localhost>"
    assert store.enrollments_for("new@example.org") == []


# -- SQL only ---------------------------------------------------------------------------------------
# What only a database has: engines racing for rows, statements cut into batches, bulk speed.
# MemoryStore has none of it (one lock, no statements), so these take an engine, not `store`.


def test_batches_beyond_one_sqlite_in_list(engine: Engine) -> None:
    """SQL only: claims, rechecks, outcomes and feedback over more ids than one SQLite IN list
    takes (PostgreSQL sends them as one array)."""
    store = SqlStore(engine)
    count = 2 * SQLITE_IN_CHUNK + 7
    emails = [f"chunk{i}@example.org" for i in range(count)]
    store.enroll([new_enrollment(email) for email in emails], now=NOW)

    claimed = store.claim_due(now=NOW, owner="a", limit=count, lease=LEASE)
    ids = [item.id for item in claimed]
    assert len(set(ids)) == count
    assert len(store.recheck(ids, owner="a", now=NOW, lease=LEASE)) == count
    store.record(
        [
            Outcome(
                delivery_id=delivery_id,
                status=DeliveryStatus.SENT,
                at=NOW,
                next_delivery=NextDelivery(step_key="story", due_at=NOW + timedelta(days=1)),
                suppress_reason="550" if n % 2 else None,
            )
            for n, delivery_id in enumerate(ids)
        ],
        owner="a",
    )
    counts = store.counts_by_status()
    assert (counts["sent"], counts["queued"]) == (count, count - count // 2)

    story = store.claim_due(now=NOW + timedelta(days=1), owner="a", limit=count, lease=LEASE)
    assert all(item.enrollment and item.enrollment.done_step_keys == {"welcome"} for item in story)
    by_email, by_delivery = store.feedback_targets(emails=emails, delivery_ids=ids)
    assert (len(by_email), len(by_delivery)) == (count, count)
    fresh = store.suppress_subscribers(
        dict.fromkeys(by_email.values(), "550"), status=SubscriberStatus.BOUNCED, now=NOW
    )
    assert fresh == count - count // 2
    store.release([item.id for item in story], owner="a")
    assert store.counts_by_status()["sending"] == 0


def test_two_owners_claiming_concurrently_never_share_a_row(
    engine: Engine, database_url: str
) -> None:
    """SQL only: two engines, so two connection pools racing for the same rows."""
    store = SqlStore(engine)
    total = 300
    store.enroll(
        [
            new_enrollment(f"c{i}@example.org", due_at=NOW - timedelta(seconds=i))
            for i in range(total)
        ],
        now=NOW,
    )
    engines = [make_engine(database_url), make_engine(database_url)]
    barrier = threading.Barrier(len(engines))
    claimed: dict[str, list[uuid.UUID]] = {}
    errors: list[BaseException] = []

    def worker(owner: str, engine: Engine) -> None:
        mine: list[uuid.UUID] = []
        try:
            own_store = SqlStore(engine)
            barrier.wait()
            while batch := own_store.claim_due(now=NOW, owner=owner, limit=7, lease=LEASE):
                mine.extend(item.id for item in batch)
        except BaseException as error:  # reported by the main thread
            errors.append(error)
        claimed[owner] = mine

    threads = [
        threading.Thread(target=worker, args=(f"owner-{n}", engine))
        for n, engine in enumerate(engines)
    ]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
    finally:
        for engine in engines:
            engine.dispose()

    assert not errors, errors
    first, second = claimed["owner-0"], claimed["owner-1"]
    assert set(first).isdisjoint(second)
    assert len(first) + len(second) == total
    assert len(set(first) | set(second)) == total
    assert store.counts_by_status()["sending"] == total


@pytest.mark.slow
def test_enroll_ten_thousand_in_one_call(engine: Engine, database_url: str) -> None:
    """SQL only: the bulk statements' speed (executemany on SQLite, unnest() on PostgreSQL)."""
    store = SqlStore(engine)
    count = 10_000
    items = [
        new_enrollment(f"bulk{i}@example.org", due_at=NOW + timedelta(seconds=i))
        for i in range(count)
    ]

    started = time.perf_counter()
    results = store.enroll(items, now=NOW)
    elapsed = time.perf_counter() - started
    print(f"\nenrolled {count} on {database_url.split(':', 1)[0]} in {elapsed:.2f} s")

    assert len(results) == count
    assert all(result.created for result in results)
    assert len({result.subscriber_id for result in results}) == count
    assert store.counts_by_status()["queued"] == count

    started = time.perf_counter()
    again = store.enroll(items[:2000], now=NOW)
    print(f"re-enrolled 2000 duplicates in {time.perf_counter() - started:.2f} s")
    assert {(result.created, result.reason) for result in again} == {(False, "already enrolled")}
    assert store.counts_by_status()["queued"] == count
