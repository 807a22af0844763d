"""First names and answers are encrypted at rest, readable through the models, and keys rotate."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import Engine, text

from nurture.content.library import ContentHolder
from nurture.domain.people import make_person
from nurture.engine.enrollment import enroll
from nurture.engine.ports import ConsentRecord
from nurture.store import crypto
from nurture.store.accounts.store import AccountStore
from nurture.store.rotation import rotate_data_keys
from nurture.store.sql.store import SqlStore
from tests.support.clock import T0
from tests.support.paths import ROOT
from tests.support.smtp import RecordingSmtpServer

OLD, NEW = crypto.new_key(), crypto.new_key()


@pytest.fixture(autouse=True)
def restore_keyring() -> Iterator[None]:
    before = crypto.keyring()
    yield
    crypto.configure(before)


def _enroll(store: SqlStore, email: str = "asha@example.org") -> None:
    content = ContentHolder(ROOT / "sequences", ROOT / "templates").current
    person = make_person(email, "Ashwini", "Asia/Kolkata", ["fear_of_blame", "ganged_up_on"])
    enroll(store, content, [person], "partner-hesitant", ConsentRecord(kind="operator", source="t"),
           T0)


def _raw(engine: Engine) -> list[tuple[str | None, str]]:
    with engine.connect() as conn:
        return [(row[0], row[1]) for row in conn.execute(
            text("SELECT first_name, CAST(hesitations AS TEXT) FROM subscriber"))]


def _account_name(engine: Engine, email: str = "asha@example.org") -> tuple[str | None, frozenset[str]]:
    with engine.connect() as conn:
        subscriber_id = conn.execute(text("SELECT id FROM subscriber WHERE email = :e"),
                                     {"e": email}).scalar_one()
    if isinstance(subscriber_id, str):  # SQLite hands back the text form of a raw query
        subscriber_id = uuid.UUID(subscriber_id)
    account = AccountStore(engine).account(subscriber_id)
    assert account is not None
    return account.first_name, account.hesitations


def test_names_and_answers_are_unreadable_in_the_database(store: SqlStore) -> None:
    crypto.configure(crypto.KeyRing([OLD]))
    _enroll(store)
    [(name, answers)] = _raw(store.engine)
    assert name is not None and name.startswith("enc1:") and "Ashwini" not in name
    assert answers.startswith("enc1:") and "fear_of_blame" not in answers
    assert _account_name(store.engine) == ("Ashwini", frozenset({"fear_of_blame", "ganged_up_on"}))
    claimed = store.claim_due(now=T0, owner="t", limit=10, lease=timedelta(minutes=5))
    assert claimed[0].subscriber.first_name == "Ashwini"
    assert claimed[0].subscriber.hesitations == frozenset({"fear_of_blame", "ganged_up_on"})


def test_keys_rotate_without_losing_anything(store: SqlStore) -> None:
    crypto.configure(crypto.KeyRing([OLD]))
    _enroll(store)
    crypto.configure(crypto.KeyRing([NEW, OLD]))
    assert _account_name(store.engine)[0] == "Ashwini", "old values still read with both keys"
    assert rotate_data_keys(store.engine) == 1
    crypto.configure(crypto.KeyRing([NEW]))
    assert _account_name(store.engine)[0] == "Ashwini", "after rotation the old key can go"
    crypto.configure(crypto.KeyRing([OLD]))
    with pytest.raises(crypto.DataKeyError, match="not in NURTURE_DATA_KEYS"):
        _account_name(store.engine)


def test_values_written_before_encryption_are_read_and_then_encrypted(store: SqlStore) -> None:
    crypto.configure(crypto.KeyRing([OLD]))
    _enroll(store)
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE subscriber SET first_name = 'Plain', "
                          "hesitations = '[\"stigma\"]'"))
    assert _account_name(store.engine) == ("Plain", frozenset({"stigma"}))
    rotate_data_keys(store.engine)
    [(name, answers)] = _raw(store.engine)
    assert name is not None and name.startswith("enc1:") and answers.startswith("enc1:")
    assert _account_name(store.engine) == ("Plain", frozenset({"stigma"}))


def test_a_malformed_key_names_the_variable() -> None:
    with pytest.raises(crypto.DataKeyError, match="NURTURE_DATA_KEYS"):
        crypto.KeyRing(["not-a-key"])


def test_one_unreadable_subscriber_is_held_back_and_the_rest_still_go_out(
        store: SqlStore, smtp_server: RecordingSmtpServer, caplog: pytest.LogCaptureFixture) -> None:
    from nurture.engine.dispatcher import Dispatcher
    from nurture.engine.policy import DispatchPolicy
    from nurture.engine.ports import DeliveryStatus
    from nurture.engine.tokens import LinkMaker, TokenSigner
    from nurture.rendering.types import Brand
    from nurture.setting_values import parse_smtp_url
    from nurture.smtp.transports import SmtpTransport

    crypto.configure(crypto.KeyRing([OLD]))
    _enroll(store, "lost-key@example.org")
    crypto.configure(crypto.KeyRing([NEW]))  # the operator dropped OLD without rotating
    _enroll(store, "asha@example.org")

    claimed = store.claim_due(now=T0, owner="t", limit=10, lease=timedelta(minutes=5))
    by_email = {claim.subscriber.email: claim for claim in claimed}
    assert by_email["asha@example.org"].unreadable is None
    assert by_email["asha@example.org"].subscriber.first_name == "Ashwini"
    lost = by_email["lost-key@example.org"]
    assert lost.unreadable is not None and "NURTURE_DATA_KEYS" in lost.unreadable
    assert lost.subscriber.first_name is None
    store.release([claim.id for claim in claimed], owner="t")

    content = ContentHolder(ROOT / "sequences", ROOT / "templates")
    with SmtpTransport(parse_smtp_url(smtp_server.url), timeout=5) as transport:
        dispatcher = Dispatcher(
            store=store, transport=transport, content=lambda: content.current,
            brand=Brand(sender="Nurture <hello@nurture.test>", discreet_sender_name="Notes for you",
                        postal_address="Nurture Test, 12 Sample Road, Testville",
                        base_url="https://nurture.test"),
            links=LinkMaker(base_url="https://nurture.test", signer=TokenSigner("x" * 32)),
            owner="t", message_id_domain="nurture.test", policy=DispatchPolicy())
        report = dispatcher.run(T0 + timedelta(hours=1))

    assert (report.sent, report.deferred) == (1, 1)
    assert [m.recipients[0] for m in smtp_server.wait_for(1)] == ["asha@example.org"]
    [held] = [d for d in store.deliveries_for("lost-key@example.org")
              if d.status is DeliveryStatus.DEFERRED]
    assert held.attempts == 1
    assert held.last_error is not None and "NURTURE_DATA_KEYS" in held.last_error
    assert "lost-key" not in caplog.text, "the log names the delivery, not the person"

    crypto.configure(crypto.KeyRing([NEW, OLD]))  # the key is put back
    later = dispatcher.run(T0 + timedelta(days=1))
    assert later.sent == 1
    assert "Ashwini" in smtp_server.wait_for(2)[-1].data.decode("utf-8", "replace")
