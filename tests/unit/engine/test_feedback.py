"""Reading DSN and ARF reports, matching them to subscribers, and checking webhook signatures."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from collections.abc import Sequence as Seq
from datetime import UTC, datetime
from pathlib import Path

import pytest

from nurture.engine.feedback import apply_feedback, delivery_id_from, ingest_messages, read_maildir
from nurture.engine.feedback_reports import FeedbackEvent, FeedbackKind, parse_report
from nurture.engine.feedback_webhooks import events_from_webhook, sign_webhook, verify_webhook_signature
from nurture.engine.ports import SubscriberStatus
from tests.support.paths import ROOT

FIXTURES = ROOT / "tests" / "fixtures" / "bounces"
NOW = datetime(2026, 3, 6, 12, 0, tzinfo=UTC)
SECRET = "whsec-test-0123456789abcdef"


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def test_postfix_dsn_is_a_hard_bounce_with_the_original_message_id() -> None:
    (event,) = parse_report(fixture("dsn-hard-postfix.eml"))
    assert event == FeedbackEvent(
        kind=FeedbackKind.HARD_BOUNCE,
        recipients=("gone@example.org",),
        message_id="<5f0c0a4e8d3b4c1fa1e2d3c4b5a69788@nurture.test>",
        detail="5.1.1",
    )


def test_forwarded_dsn_lists_the_original_recipient_first() -> None:
    (event,) = parse_report(fixture("dsn-hard-forwarded.eml"))
    assert event.kind is FeedbackKind.HARD_BOUNCE
    assert event.recipients == ("moved@example.org", "moved.elsewhere@forward.example")
    assert event.message_id is None, "the headers part has no Message-ID"
    assert event.detail == "5.2.1"


def test_delayed_4xx_dsn_is_transient() -> None:
    (event,) = parse_report(fixture("dsn-soft-delayed.eml"))
    assert event.kind is FeedbackKind.SOFT_BOUNCE
    assert event.detail == "4.2.2"
    assert event.message_id == "<0a1b2c3d4e5f60718293a4b5c6d7e8f9@nurture.test>"


def test_arf_abuse_is_a_complaint_about_our_message() -> None:
    (event,) = parse_report(fixture("arf-abuse.eml"))
    assert event.kind is FeedbackKind.COMPLAINT
    assert event.message_id == "<9c8b7a6d5e4f40312233445566778899@nurture.test>"
    assert event.recipients == ("redacted@mailbox.example",)
    assert event.detail == "abuse"


def test_arf_without_message_id_names_the_recipient() -> None:
    (event,) = parse_report(fixture("arf-abuse-by-recipient.eml"))
    assert event.kind is FeedbackKind.COMPLAINT
    assert event.recipients == ("angry@example.org",)


def test_other_feedback_types_and_plain_mail_are_not_acted_on() -> None:
    (event,) = parse_report(fixture("arf-not-spam.eml"))
    assert event.kind is FeedbackKind.OTHER
    assert parse_report(fixture("autoreply.eml")) == []
    assert parse_report(b"") == []
    assert parse_report(b"\xff\xfe garbage \x00 without headers") == []


def test_dsn_status_falls_back_to_the_diagnostic_code() -> None:
    raw = fixture("dsn-hard-postfix.eml").replace(b"Status: 5.1.1\n", b"Status: unknown\n")
    (event,) = parse_report(raw)
    assert (event.kind, event.detail) == (FeedbackKind.HARD_BOUNCE, "5.x.x")


def test_delivery_id_from_our_message_ids_only() -> None:
    delivery_id = uuid.uuid4()
    ours = f"<{delivery_id.hex}@nurture.test>"
    assert delivery_id_from(ours) == delivery_id
    assert delivery_id_from(ours, "NURTURE.test") == delivery_id
    assert delivery_id_from(ours, "other.test") is None
    assert delivery_id_from("<20260302.4Zx1Lq@mx.example.net>") is None
    assert delivery_id_from(None) is None


class FakeStore:
    """The two store calls apply_feedback makes, over dictionaries."""

    def __init__(self, emails: Mapping[str, uuid.UUID], deliveries: Mapping[uuid.UUID, uuid.UUID]):
        self.emails = dict(emails)
        self.deliveries = dict(deliveries)
        self.suppressed: dict[uuid.UUID, tuple[SubscriberStatus, str]] = {}
        self.calls: list[SubscriberStatus] = []

    def feedback_targets(
        self, *, emails: Seq[str], delivery_ids: Seq[uuid.UUID]
    ) -> tuple[dict[str, uuid.UUID], dict[uuid.UUID, uuid.UUID]]:
        return (
            {e: self.emails[e] for e in emails if e in self.emails},
            {d: self.deliveries[d] for d in delivery_ids if d in self.deliveries},
        )

    def suppress_subscribers(
        self, reasons: Mapping[uuid.UUID, str], *, status: SubscriberStatus, now: datetime
    ) -> int:
        self.calls.append(status)
        new = sum(1 for s in reasons if s not in self.suppressed)
        for subscriber_id, reason in reasons.items():
            self.suppressed[subscriber_id] = (status, reason)
        return new


def test_apply_feedback_matches_by_message_id_first_then_by_address() -> None:
    alice, bob, carol = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    delivery = uuid.uuid4()
    store = FakeStore({"bob@example.org": bob, "carol@example.org": carol}, {delivery: alice})
    events = [
        # The report names a forwarding address, but the Message-ID is Alice's delivery.
        FeedbackEvent(FeedbackKind.HARD_BOUNCE, ("bob@example.org",),
                      f"<{delivery.hex}@nurture.test>", "5.1.1"),
        FeedbackEvent(FeedbackKind.HARD_BOUNCE, ("nobody@example.org", "carol@example.org"),
                      None, "5.2.1"),
        FeedbackEvent(FeedbackKind.COMPLAINT, ("carol@example.org",), None, "abuse"),
        FeedbackEvent(FeedbackKind.SOFT_BOUNCE, ("bob@example.org",), None, "4.2.2"),
        FeedbackEvent(FeedbackKind.OTHER, ("bob@example.org",), None, "not-spam"),
        FeedbackEvent(FeedbackKind.COMPLAINT, ("stranger@example.org",), None, "abuse"),
    ]

    counts = apply_feedback(store, events, now=NOW, message_id_domain="nurture.test")

    assert counts.as_dict() == {
        "messages": 0, "not_reports": 0, "hard_bounces": 2, "complaints": 1, "ignored": 2,
        "unmatched": 1, "newly_suppressed": 2,
    }
    assert store.suppressed[alice] == (SubscriberStatus.BOUNCED, "hard bounce (report 5.1.1)")
    # Carol bounced and complained: the complaint is applied last and wins.
    assert store.suppressed[carol] == (SubscriberStatus.COMPLAINED, "complaint (abuse)")
    assert bob not in store.suppressed
    assert store.calls == [SubscriberStatus.BOUNCED, SubscriberStatus.COMPLAINED]


def test_ingest_counts_messages_and_non_reports() -> None:
    gone = uuid.uuid4()
    store = FakeStore({"gone@example.org": gone}, {})
    counts = ingest_messages(
        store,
        [fixture("dsn-hard-postfix.eml"), fixture("autoreply.eml"), fixture("dsn-soft-delayed.eml")],
        now=NOW,
    )
    assert (counts.messages, counts.not_reports, counts.hard_bounces, counts.ignored) == (3, 1, 1, 1)
    assert store.suppressed[gone][0] is SubscriberStatus.BOUNCED


def test_read_maildir_reads_new_and_cur_only(tmp_path: Path) -> None:
    for folder in ("new", "cur", "tmp"):
        (tmp_path / folder).mkdir()
    (tmp_path / "new" / "2").write_bytes(b"second")
    (tmp_path / "new" / "1").write_bytes(b"first")
    (tmp_path / "cur" / "3:2,S").write_bytes(b"seen")
    (tmp_path / "cur" / ".hidden").write_bytes(b"hidden")
    (tmp_path / "tmp" / "4").write_bytes(b"being written")

    assert list(read_maildir(tmp_path)) == [
        ("new/1", b"first"), ("new/2", b"second"), ("cur/3:2,S", b"seen"),
    ]
    with pytest.raises(NotADirectoryError, match="not a maildir"):
        read_maildir(tmp_path / "tmp")


def test_webhook_signature_round_trip_and_tampering() -> None:
    body = b'{"events": []}'
    header = sign_webhook(SECRET, body, 1_772_000_000)
    assert header.startswith("t=1772000000,v1=")
    assert verify_webhook_signature(SECRET, body, header, now=1_772_000_000)
    assert verify_webhook_signature(SECRET, body, header, now=1_772_000_000 + 299)
    assert not verify_webhook_signature(SECRET, body + b" ", header, now=1_772_000_000)
    assert not verify_webhook_signature("another-secret-value", body, header, now=1_772_000_000)


@pytest.mark.parametrize("skew", [-301, 301, 10_000])
def test_webhook_signature_outside_the_tolerance_is_refused(skew: int) -> None:
    body = b"{}"
    header = sign_webhook(SECRET, body, 1_772_000_000)
    assert not verify_webhook_signature(SECRET, body, header, now=1_772_000_000 + skew)


@pytest.mark.parametrize(
    "header",
    [None, "", "garbage", "v1=abc", "t=1772000000", "t=abc,v1=00", "t=1772000000,v1=",
     "t=-5,v1=00", "t=1772000000,v1=" + "0" * 2000],
)
def test_malformed_signature_headers_are_refused(header: str | None) -> None:
    assert not verify_webhook_signature(SECRET, b"{}", header, now=1_772_000_000)


def test_webhook_signature_accepts_any_of_several_during_rotation() -> None:
    body = b"{}"
    old = sign_webhook("old-secret-abcdefgh", body, 1_772_000_000).split(",")[1]
    new = sign_webhook(SECRET, body, 1_772_000_000)
    assert verify_webhook_signature(SECRET, body, f"{new},{old}", now=1_772_000_000)
    assert verify_webhook_signature(SECRET, body, f"t=1772000000,{old},{new.split(',')[1]}",
                                    now=1_772_000_000)
    with pytest.raises(ValueError, match="empty"):
        verify_webhook_signature("", body, new, now=1_772_000_000)


def test_events_from_webhook() -> None:
    body = json.dumps({"events": [
        {"type": "hard_bounce", "email": " Gone@Example.org ", "detail": "5.1.1"},
        {"type": "complaint", "message_id": "<0123456789abcdef0123456789abcdef@nurture.test>"},
        {"type": "soft_bounce", "email": "full@example.org"},
    ]}).encode()
    assert events_from_webhook(body) == [
        FeedbackEvent(FeedbackKind.HARD_BOUNCE, ("gone@example.org",), None, "5.1.1"),
        FeedbackEvent(FeedbackKind.COMPLAINT, (),
                      "<0123456789abcdef0123456789abcdef@nurture.test>", "complaint"),
        FeedbackEvent(FeedbackKind.SOFT_BOUNCE, ("full@example.org",), None, "soft_bounce"),
    ]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"not json", "not JSON"),
        (b"[]", "events"),
        (b'{"events": [1]}', "not an object"),
        (b'{"events": [{"type": "open", "email": "a@b.org"}]}', "type must be"),
        (b'{"events": [{"type": "complaint"}]}', "needs an email or a message_id"),
        (b'{"events": [{"type": "complaint", "email": 5}]}', "must be strings"),
    ],
)
def test_events_from_webhook_refuses_malformed_bodies(body: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        events_from_webhook(body)
