"""Reading bounce and complaint reports: DSN (RFC 3464) and ARF (RFC 5965) messages, turned into
feedback events that name the recipients and the email they are about."""

from __future__ import annotations

import re
from dataclasses import dataclass
from email import message_from_bytes
from email import policy as email_policy
from email.message import Message
from email.parser import HeaderParser
from email.utils import getaddresses
from enum import StrEnum

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
        action = clean(block.get("Action")).lower()
        status = _STATUS.match(clean(block.get("Status")))
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
    feedback_type = clean(fields_.get("Feedback-Type")).lower() or "unknown"
    recipients: list[str] = [
        address
        for value in fields_.get_all("Original-Rcpt-To") or []
        if (address := address_in(str(value)))
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


def clean(value: object) -> str:
    """A header or field value on one line, or "" when there is none."""
    return " ".join(str(value).split()) if value is not None else ""


def _header(message: Message, name: str) -> str | None:
    value = clean(message.get(name))
    return value or None


def address_in(text: str) -> str | None:
    """The lower-cased address in `text` ("Name <a@b>", "<a@b>", "a@b"), or None."""
    _, address = getaddresses([text.strip()])[0] if text.strip() else ("", "")
    address = address.strip().strip("<>").lower()
    return address if "@" in address else None


def _typed_address(value: object) -> str | None:
    """The address of an RFC 3464 recipient field: "rfc822; someone@example.org"."""
    text = clean(value)
    if not text:
        return None
    address_type, _, address = text.partition(";")
    if not address:
        address = address_type  # the type is required, but some MTAs leave it out
    return address_in(address)


def _diagnostic_class(block: Message) -> str | None:
    """The class of the SMTP reply in Diagnostic-Code, for a DSN without a usable Status."""
    found = _SMTP_CODE.search(clean(block.get("Diagnostic-Code")))
    return found.group(1) if found else None

