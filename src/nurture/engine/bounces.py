"""Bounces and complaints: DSN (RFC 3464) and ARF (RFC 5965) reports and signed webhook events,
matched to subscribers and turned into suppressions."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from collections.abc import Sequence as Seq
from dataclasses import dataclass, fields
from datetime import datetime
from email import message_from_bytes
from email import policy as email_policy
from email.message import Message
from email.parser import HeaderParser
from email.utils import getaddresses
from enum import StrEnum
from pathlib import Path
from typing import Final, Protocol

from nurture.engine.ports import SubscriberStatus

log = logging.getLogger(__name__)

SIGNATURE_HEADER: Final = "X-Nurture-Signature"
DEFAULT_TOLERANCE_SECONDS: Final = 300
MAX_WEBHOOK_EVENTS: Final = 1000
MAX_SIGNATURE_HEADER: Final = 1024

# Our Message-IDs are `<{delivery_id.hex}@{domain}>` (dispatcher.message_id_for).
_OUR_MESSAGE_ID = re.compile(r"<?\s*([0-9a-f]{32})@([^>\s]+)\s*>?", re.IGNORECASE)
_STATUS = re.compile(r"([245])\.\d{1,3}\.\d{1,3}")
_SMTP_CODE = re.compile(r"\b([245])\d\d\b")


class FeedbackKind(StrEnum):
    HARD_BOUNCE = "hard_bounce"
    SOFT_BOUNCE = "soft_bounce"
    """4.x.x or "delayed": transient, ignored here (the relay or our own retries deal with it)."""
    COMPLAINT = "complaint"
    OTHER = "other"
    """A report we do not act on: delivered/relayed DSNs, feedback types other than abuse."""


@dataclass(frozen=True)
class FeedbackEvent:
    """One recipient's bounce or one complaint, with what identifies the email it is about."""

    kind: FeedbackKind
    recipients: tuple[str, ...] = ()
    """Lower-cased addresses that may be the subscriber's, most reliable first."""
    message_id: str | None = None
    """The Message-ID of the email this is about, when the report carries it."""
    detail: str = ""
    """A status code or feedback type, safe to log (never an address)."""


class FeedbackStore(Protocol):
    def feedback_targets(
        self, *, emails: Seq[str], delivery_ids: Seq[uuid.UUID]
    ) -> tuple[dict[str, uuid.UUID], dict[uuid.UUID, uuid.UUID]]: ...

    def suppress_subscribers(
        self, reasons: Mapping[uuid.UUID, str], *, status: SubscriberStatus, now: datetime
    ) -> int: ...


@dataclass
class FeedbackCounts:
    messages: int = 0
    not_reports: int = 0
    hard_bounces: int = 0
    complaints: int = 0
    ignored: int = 0
    unmatched: int = 0
    newly_suppressed: int = 0

    def add(self, other: FeedbackCounts) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


# -- reading reports -------------------------------------------------------------------------------


def parse_report(raw: bytes) -> list[FeedbackEvent]:
    """The events in one DSN or ARF message; an empty list for any other message (auto-replies,
    human answers, reports we cannot read)."""
    # compat32: bounce messages are often slightly malformed, and it never raises on headers.
    message = message_from_bytes(raw, policy=email_policy.compat32)
    for part in message.walk():
        kind = part.get_content_type()
        if kind == "message/delivery-status":
            return _dsn_events(part, _original_headers(message))
        if kind == "message/feedback-report":
            return _arf_events(part, _original_headers(message))
    return []


def _dsn_events(status_part: Message, original: Message | None) -> list[FeedbackEvent]:
    message_id = _header(original, "Message-ID") if original is not None else None
    events = []
    for block in _field_blocks(status_part):
        final = _typed_address(block.get("Final-Recipient"))
        if final is None:
            continue  # the per-message block, or a broken one
        recipients = tuple(
            dict.fromkeys(a for a in (_typed_address(block.get("Original-Recipient")), final) if a)
        )
        action = _clean(block.get("Action")).lower()
        status = _STATUS.match(_clean(block.get("Status")))
        status_class = status.group(1) if status else _diagnostic_class(block)
        detail = status.group(0) if status else f"{status_class or '?'}.x.x"
        if action == "failed" and status_class == "5":
            kind = FeedbackKind.HARD_BOUNCE
        elif action in ("failed", "delayed"):
            kind = FeedbackKind.SOFT_BOUNCE
        else:
            kind = FeedbackKind.OTHER
        events.append(FeedbackEvent(kind, recipients, message_id, detail))
    return events


def _arf_events(report_part: Message, original: Message | None) -> list[FeedbackEvent]:
    blocks = _field_blocks(report_part)
    if not blocks:
        return []
    fields_ = blocks[0]
    feedback_type = _clean(fields_.get("Feedback-Type")).lower() or "unknown"
    recipients: list[str] = [
        address
        for value in fields_.get_all("Original-Rcpt-To") or []
        if (address := _address(str(value)))
    ]
    message_id = None
    if original is not None:
        message_id = _header(original, "Message-ID")
        recipients += [
            address.lower()
            for _, address in getaddresses([str(v) for v in original.get_all("To") or []])
            if "@" in address
        ]
    kind = FeedbackKind.COMPLAINT if feedback_type == "abuse" else FeedbackKind.OTHER
    return [FeedbackEvent(kind, tuple(dict.fromkeys(recipients)), message_id, feedback_type[:40])]


def _field_blocks(part: Message) -> list[Message]:
    payload = part.get_payload()
    if isinstance(payload, list):
        return [block for block in payload if isinstance(block, Message)]
    # Some generators base64-encode the report; read it as header blocks ourselves.
    text = part.get_payload(decode=True)
    if not isinstance(text, bytes):
        return []
    parser = HeaderParser(policy=email_policy.compat32)
    chunks = re.split(r"\r?\n\s*\r?\n", text.decode("utf-8", "replace"))
    return [parser.parsestr(chunk.strip() + "\n") for chunk in chunks if chunk.strip()]


def _original_headers(message: Message) -> Message | None:
    """The headers of the returned or reported email (message/rfc822 or text/rfc822-headers)."""
    for part in message.walk():
        kind = part.get_content_type()
        if kind == "message/rfc822":
            payload = part.get_payload()
            if isinstance(payload, list) and payload and isinstance(payload[0], Message):
                return payload[0]
        elif kind == "text/rfc822-headers":
            raw = part.get_payload(decode=True)
            if isinstance(raw, bytes):
                return HeaderParser(policy=email_policy.compat32).parsestr(
                    raw.decode("utf-8", "replace")
                )
    return None


def _clean(value: object) -> str:
    return " ".join(str(value).split()) if value is not None else ""


def _header(message: Message, name: str) -> str | None:
    value = _clean(message.get(name))
    return value or None


def _address(text: str) -> str | None:
    _, address = getaddresses([text.strip()])[0] if text.strip() else ("", "")
    address = address.strip().strip("<>").lower()
    return address if "@" in address else None


def _typed_address(value: object) -> str | None:
    """The address of an RFC 3464 recipient field: "rfc822; someone@example.org"."""
    text = _clean(value)
    if not text:
        return None
    address_type, _, address = text.partition(";")
    if not address:
        address = address_type  # the type is required, but some MTAs leave it out
    return _address(address)


def _diagnostic_class(block: Message) -> str | None:
    """The class of the SMTP reply in Diagnostic-Code, for a DSN without a usable Status."""
    found = _SMTP_CODE.search(_clean(block.get("Diagnostic-Code")))
    return found.group(1) if found else None


def delivery_id_from(message_id: str | None, domain: str | None = None) -> uuid.UUID | None:
    """The delivery id inside one of our Message-IDs; None for anyone else's (or another domain's
    when `domain` is given)."""
    if not message_id:
        return None
    found = _OUR_MESSAGE_ID.fullmatch(message_id.strip())
    if found is None or (domain is not None and found.group(2).lower() != domain.lower()):
        return None
    return uuid.UUID(hex=found.group(1))


def read_maildir(path: Path) -> Iterator[tuple[str, bytes]]:
    """(name, bytes) of every message in the maildir's new/ and cur/ folders, in name order, read
    one at a time. Raises NotADirectoryError at once when `path` is not a maildir."""
    folders = [folder for folder in (path / "new", path / "cur") if folder.is_dir()]
    if not folders:
        raise NotADirectoryError(f"{path} is not a maildir (it has no cur/ or new/ folder)")
    return _maildir_messages(folders)


def _maildir_messages(folders: Seq[Path]) -> Iterator[tuple[str, bytes]]:
    for folder in folders:
        for entry in sorted(folder.iterdir()):
            # Dot files are hidden by convention; tmp/ (messages being written) is never read.
            if entry.is_file() and not entry.name.startswith("."):
                yield f"{folder.name}/{entry.name}", entry.read_bytes()


# -- acting on them --------------------------------------------------------------------------------


def apply_feedback(
    store: FeedbackStore,
    events: Iterable[FeedbackEvent],
    *,
    now: datetime,
    message_id_domain: str | None = None,
) -> FeedbackCounts:
    """Suppress the subscribers that hard-bounced (status bounced, enrollments ended) or complained
    (status complained, suppressed everywhere). Idempotent: a report read twice changes nothing
    more. A subscriber is found by our Message-ID first (it names the delivery exactly), then by
    the addresses in the report, most reliable first."""
    counts = FeedbackCounts()
    every = list(events)
    wanted = [e for e in every if e.kind in (FeedbackKind.HARD_BOUNCE, FeedbackKind.COMPLAINT)]
    counts.ignored = len(every) - len(wanted)
    delivery_ids = {e: delivery_id_from(e.message_id, message_id_domain) for e in wanted}
    by_email, by_delivery = store.feedback_targets(
        emails=sorted({r for e in wanted for r in e.recipients}),
        delivery_ids=sorted({d for d in delivery_ids.values() if d is not None}),
    )
    bounced: dict[uuid.UUID, str] = {}
    complained: dict[uuid.UUID, str] = {}
    for event in wanted:
        delivery_id = delivery_ids[event]
        subscriber_id = by_delivery.get(delivery_id) if delivery_id is not None else None
        if subscriber_id is None:
            subscriber_id = next((by_email[r] for r in event.recipients if r in by_email), None)
        if subscriber_id is None:
            counts.unmatched += 1
            continue
        if event.kind is FeedbackKind.HARD_BOUNCE:
            counts.hard_bounces += 1
            bounced.setdefault(subscriber_id, f"hard bounce (report {event.detail})")
        else:
            counts.complaints += 1
            complained.setdefault(subscriber_id, f"complaint ({event.detail})")
    # Bounces first: a complaint about the same person then overrides the bounced status.
    counts.newly_suppressed += store.suppress_subscribers(
        bounced, status=SubscriberStatus.BOUNCED, now=now
    )
    counts.newly_suppressed += store.suppress_subscribers(
        complained, status=SubscriberStatus.COMPLAINED, now=now
    )
    log.info("feedback applied", extra=counts.as_dict())
    return counts


def ingest_messages(
    store: FeedbackStore,
    messages: Iterable[bytes],
    *,
    now: datetime,
    message_id_domain: str | None = None,
) -> FeedbackCounts:
    """Parse each message as a DSN or ARF report and apply every event in one go."""
    events: list[FeedbackEvent] = []
    counts = FeedbackCounts()
    for raw in messages:
        counts.messages += 1
        found = parse_report(raw)
        if not found:
            counts.not_reports += 1
        events.extend(found)
    counts.add(apply_feedback(store, events, now=now, message_id_domain=message_id_domain))
    return counts


# -- webhooks --------------------------------------------------------------------------------------


def sign_webhook(secret: str, body: bytes, timestamp: int) -> str:
    """The signature header value for `body` sent at `timestamp` (Unix seconds):
    `t=<timestamp>,v1=<hex HMAC-SHA256 of "<timestamp>." + body>`."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"


def verify_webhook_signature(
    secret: str,
    body: bytes,
    signature_header: str | None,
    *,
    now: float | None = None,
    tolerance: float = DEFAULT_TOLERANCE_SECONDS,
) -> bool:
    """Whether `signature_header` (see sign_webhook; several v1= values are allowed while a
    secret is rotated) signs `body` with `secret`, at a timestamp within `tolerance` seconds of
    `now`, so that a captured request cannot be replayed later."""
    if not secret:
        raise ValueError("the webhook secret is empty: refuse to check signatures against nothing")
    if not signature_header or len(signature_header) > MAX_SIGNATURE_HEADER:
        return False
    timestamp: int | None = None
    candidates: list[str] = []
    for item in signature_header.split(","):
        key, _, value = item.strip().partition("=")
        if key == "t" and value.isdigit() and len(value) <= 12:
            timestamp = int(value)
        elif key == "v1" and value:
            candidates.append(value.strip().lower())
    if timestamp is None or not candidates:
        return False
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        return False
    expected = sign_webhook(secret, body, timestamp).rsplit("v1=", 1)[1]
    # Compare with every candidate (no early exit) in constant time each.
    matched = False
    for candidate in candidates:
        matched |= hmac.compare_digest(candidate.encode(), expected.encode())
    return matched


_WEBHOOK_KINDS: Final = {
    kind.value: kind
    for kind in (FeedbackKind.HARD_BOUNCE, FeedbackKind.SOFT_BOUNCE, FeedbackKind.COMPLAINT)
}


def events_from_webhook(body: bytes) -> list[FeedbackEvent]:
    """Events from a verified webhook body (JSON):
    `{"events": [{"type": "hard_bounce" | "soft_bounce" | "complaint", "email": "...",
    "message_id": "<...>", "detail": "5.1.1"}]}`; `email` or `message_id` is required.
    Raises ValueError, with a message safe to return to the caller, on anything else."""
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ValueError("the body is not JSON") from None
    items = data.get("events") if isinstance(data, dict) else None
    if not isinstance(items, list):
        raise ValueError('expected an object with an "events" list')
    if len(items) > MAX_WEBHOOK_EVENTS:
        raise ValueError(f"at most {MAX_WEBHOOK_EVENTS} events per request")
    events = []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise ValueError(f"events[{index}] is not an object")
        kind = _WEBHOOK_KINDS.get(str(item.get("type")))
        if kind is None:
            raise ValueError(f"events[{index}].type must be hard_bounce, soft_bounce or complaint")
        email, message_id, detail = item.get("email"), item.get("message_id"), item.get("detail")
        if not all(isinstance(v, str | None) for v in (email, message_id, detail)):
            raise ValueError(f"events[{index}]: email, message_id and detail must be strings")
        address = _address(email) if email else None
        if address is None and not message_id:
            raise ValueError(f"events[{index}] needs an email or a message_id")
        events.append(
            FeedbackEvent(
                kind=kind,
                recipients=(address,) if address else (),
                message_id=message_id[:255] if message_id else None,
                detail=_clean(detail)[:40] or kind.value,
            )
        )
    return events
