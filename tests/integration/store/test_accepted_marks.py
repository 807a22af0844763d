"""Relay acceptances marked on leased rows ahead of their record (`mark_accepted`), on every
backend: the next claim after a crash gets them back as sent, and nothing else does."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import make_url

from nurture.engine.ports import AcceptedSend, DeliveryStatus, Outcome
from nurture.store.database import make_engine
from nurture.store.sql.acceptances import marking_engine
from tests.integration.store.test_store import LEASE, NOW, enroll_one
from tests.support.databases import migrated_database
from tests.support.stores import AnyStore

ACCEPTED_AT = NOW + timedelta(seconds=2)


def _sent(store: AnyStore, owner: str) -> list[Outcome]:
    claims = store.claim_due(now=NOW, owner=owner, limit=10, lease=LEASE)
    return [Outcome(claim.id, DeliveryStatus.SENT, ACCEPTED_AT, smtp_code=250, relay="primary",
                    content_version="v7", count_attempt=True) for claim in claims]


def test_a_marked_row_left_by_a_crash_comes_back_to_the_next_claim_as_accepted(
        any_store: AnyStore) -> None:
    enroll_one(any_store, "marked@example.org")
    any_store.mark_accepted(_sent(any_store, "a"), owner="a")
    # "a" dies here, before its record.

    after = NOW + LEASE
    # Queued again, it would be claimed as new and sent twice: the reaper leaves it leased.
    assert any_store.reap_expired(after) == 0
    assert any_store.release_all("a") == 0
    (claim,) = any_store.claim_due(now=after, owner="b", limit=10, lease=LEASE)

    assert claim.accepted == AcceptedSend(ACCEPTED_AT, 250, "primary", "v7")


def test_only_the_lease_holder_marks_and_only_what_the_relay_accepted(
        any_store: AnyStore) -> None:
    enroll_one(any_store, "one@example.org")
    enroll_one(any_store, "two@example.org")
    first, second = _sent(any_store, "a")

    any_store.mark_accepted([first], owner="b")  # not the holder of the lease
    any_store.mark_accepted([Outcome(second.delivery_id, DeliveryStatus.DEFERRED, ACCEPTED_AT,
                                     due_at=ACCEPTED_AT, error="451")], owner="a")

    claims = any_store.claim_due(now=NOW + LEASE, owner="c", limit=10, lease=LEASE)
    assert len(claims) == 2
    assert [claim.accepted for claim in claims] == [None, None]


def test_a_marked_row_is_recorded_as_usual_and_not_claimed_again(any_store: AnyStore) -> None:
    enroll_one(any_store, "usual@example.org")
    outcomes = _sent(any_store, "a")
    any_store.mark_accepted(outcomes, owner="a")

    any_store.record(outcomes, owner="a")

    (row,) = [d for d in any_store.deliveries_for("usual@example.org") if d.step_key == "welcome"]
    assert (row.status, row.sent_at) == (DeliveryStatus.SENT, ACCEPTED_AT)
    assert any_store.claim_due(now=NOW + 2 * LEASE, owner="b", limit=10, lease=LEASE) == []


def test_marks_on_postgresql_skip_the_flush_and_keep_the_deployments_connection_options(
        request: pytest.FixtureRequest, tmp_path: Path) -> None:
    with migrated_database("postgresql", request, tmp_path) as url:
        # A deployment's own settings in the URL (here an application name) stay in force.
        with_options = make_url(url).update_query_dict(
            {"options": "-c application_name=nurture-marks"})
        engine = make_engine(with_options)
        try:
            marking = marking_engine(engine)
            with marking.connect() as conn:
                assert conn.exec_driver_sql("SHOW synchronous_commit").scalar() == "off"
                assert conn.exec_driver_sql("SHOW application_name").scalar() == "nurture-marks"
            marking.dispose()
            # The shared pool, which records outcomes, still waits for the disk.
            with engine.connect() as conn:
                assert conn.exec_driver_sql("SHOW synchronous_commit").scalar() == "on"
        finally:
            engine.dispose()
