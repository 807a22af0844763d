"""`nurture bounces ingest` and the webhook path against SQLite and PostgreSQL: DSN and ARF reports
suppress the right subscribers, end their enrollments, skip their queued emails, and nothing else."""

from __future__ import annotations

import argparse
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from nurture.cli.bounces import register
from nurture.config import load_settings
from nurture.engine.decisions import message_id_for
from nurture.engine.feedback import apply_feedback
from nurture.engine.feedback_webhooks import events_from_webhook, sign_webhook, verify_webhook_signature
from nurture.engine.ports import (
    ConsentRecord,
    DeliveryStatus,
    EnrollmentStatus,
    NewEnrollment,
    NextDelivery,
    Outcome,
)
from nurture.store.models import Subscriber
from nurture.store.sql.store import SqlStore
from tests.support.paths import ROOT

FIXTURES = ROOT / "tests" / "fixtures" / "bounces"
DOMAIN = "nurture.test"
NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
# The Message-IDs written into the fixtures, replaced by those of real deliveries.
POSTFIX_ID = "<5f0c0a4e8d3b4c1fa1e2d3c4b5a69788@nurture.test>"
ARF_ID = "<9c8b7a6d5e4f40312233445566778899@nurture.test>"
PEOPLE = ["alice@example.org", "moved@example.org", "carol@example.org", "angry@example.org",
          "full@example.org", "happy@example.org", "dave@example.org"]


def sent_welcome(store: SqlStore) -> dict[str, str]:
    """Enroll everyone and record their welcome as sent (as the dispatcher would) with the next
    step queued; returns each person's welcome Message-ID."""
    store.enroll([
        NewEnrollment(email=email, first_name=None, time_zone="UTC", hesitations=frozenset(),
                      discreet=False, locale="en", sequence_key="sample", content_version="v",
                      first_delivery=NextDelivery("welcome", NOW),
                      consent=ConsentRecord(kind="operator", source="test"))
        for email in PEOPLE
    ], now=NOW)
    claims = store.claim_due(now=NOW, owner="t", limit=100, lease=timedelta(minutes=5))
    ids = {claim.subscriber.email: message_id_for(claim.id, DOMAIN) for claim in claims}
    store.record([
        Outcome(claim.id, DeliveryStatus.SENT, NOW, smtp_code=250,
                message_id=ids[claim.subscriber.email],
                next_delivery=NextDelivery("next-steps", NOW + timedelta(days=5)))
        for claim in claims
    ], owner="t")
    return ids


def ingest(database_url: str, *argv: str) -> int:
    parser = argparse.ArgumentParser(prog="nurture")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["bounces", "ingest", *argv, "--now", NOW.isoformat()])
    settings = load_settings(database_url=database_url, sender=f"Nurture <hello@{DOMAIN}>")
    code: int = args.handler(settings, args)
    return code


def state(store: SqlStore, email: str) -> tuple[str, bool, set[str], set[str]]:
    """(subscriber status, suppressed, enrollment statuses, statuses of the queued next step)."""
    with store.engine.connect() as conn:
        status = str(conn.scalar(select(Subscriber.status).where(Subscriber.email == email)))
    return (
        status,
        store.is_suppressed(email),
        {e.status.value for e in store.enrollments_for(email)},
        {d.status.value for d in store.deliveries_for(email) if d.step_key == "next-steps"},
    )


def test_ingest_a_maildir_then_stdin(
    store: SqlStore, database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ids = sent_welcome(store)
    maildir = tmp_path / "bounces"
    for folder in ("new", "cur", "tmp"):
        (maildir / folder).mkdir(parents=True)

    def put(folder: str, fixture: str, replacements: dict[str, str]) -> None:
        text = (FIXTURES / fixture).read_text()
        for old, new in replacements.items():
            text = text.replace(old, new)
        (maildir / folder / fixture).write_text(text)

    # The bounce names an address we never had; its Message-ID is Alice's delivery.
    put("new", "dsn-hard-postfix.eml", {POSTFIX_ID: ids["alice@example.org"]})
    put("new", "dsn-hard-forwarded.eml", {})
    put("cur", "arf-abuse.eml", {ARF_ID: ids["carol@example.org"]})
    put("cur", "arf-abuse-by-recipient.eml", {})
    put("new", "dsn-soft-delayed.eml", {})
    put("new", "arf-not-spam.eml", {})
    put("cur", "autoreply.eml", {})

    assert ingest(database_url, "--maildir", str(maildir)) == 0
    out = capsys.readouterr().out.strip()
    with capsys.disabled():
        print(f"\n[bounces] maildir: {out}")
    assert out == ("messages=7 not_reports=1 hard_bounces=2 complaints=2 ignored=2 unmatched=0 "
                   "newly_suppressed=4")
    assert state(store, "alice@example.org") == ("bounced", True, {"exited"}, {"skipped"})
    assert state(store, "moved@example.org") == ("bounced", True, {"exited"}, {"skipped"})
    assert state(store, "carol@example.org") == ("complained", True, {"exited"}, {"skipped"})
    assert state(store, "angry@example.org") == ("complained", True, {"exited"}, {"skipped"})
    for untouched in ("full@example.org", "happy@example.org", "dave@example.org"):
        assert state(store, untouched) == ("active", False, {"active"}, {"queued"})
    (enrollment,) = store.enrollments_for("alice@example.org")
    assert enrollment.end_reason == "bounced"

    # Read again: idempotent.
    assert ingest(database_url, "--maildir", str(maildir), "--json") == 0
    again = json.loads(capsys.readouterr().out)
    assert (again["hard_bounces"], again["complaints"], again["newly_suppressed"]) == (2, 2, 0)

    # One message on stdin: Alice, already bounced, now complains; the complaint wins.
    raw = (FIXTURES / "arf-abuse.eml").read_bytes().replace(
        ARF_ID.encode(), ids["alice@example.org"].encode())
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(raw)))
    assert ingest(database_url, "-") == 0
    assert "complaints=1" in capsys.readouterr().out
    assert state(store, "alice@example.org")[0] == "complained"


def test_ingest_usage_errors(database_url: str, tmp_path: Path,
                             capsys: pytest.CaptureFixture[str]) -> None:
    assert ingest(database_url) == 2
    assert ingest(database_url, "-", "--maildir", str(tmp_path)) == 2
    assert ingest(database_url, "--maildir", str(tmp_path)) == 1
    assert "not a maildir" in capsys.readouterr().err


def test_signed_webhook_events_suppress(store: SqlStore) -> None:
    ids = sent_welcome(store)
    body = json.dumps({"events": [
        {"type": "hard_bounce", "email": "Full@Example.org", "detail": "5.1.1"},
        {"type": "complaint", "message_id": ids["happy@example.org"]},
        {"type": "soft_bounce", "email": "dave@example.org", "detail": "4.2.2"},
    ]}).encode()
    header = sign_webhook("webhook-secret-for-tests", body, 1_772_445_600)
    assert verify_webhook_signature("webhook-secret-for-tests", body, header, now=1_772_445_610)

    counts = apply_feedback(store, events_from_webhook(body), now=NOW, message_id_domain=DOMAIN)

    assert (counts.hard_bounces, counts.complaints, counts.ignored) == (1, 1, 1)
    assert state(store, "full@example.org")[:2] == ("bounced", True)
    assert state(store, "happy@example.org")[:2] == ("complained", True)
    assert state(store, "dave@example.org") == ("active", False, {"active"}, {"queued"})
    assert {e.status for e in store.enrollments_for("full@example.org")} == {
        EnrollmentStatus.EXITED}
