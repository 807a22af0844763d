"""Feedback from a provider's webhook: signing and checking the signature of a request (with a
timestamp against replays), and reading the events in its JSON body."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Final

from nurture.engine.feedback_reports import FeedbackEvent, FeedbackKind, address_in, clean

SIGNATURE_HEADER: Final = "X-Nurture-Signature"
DEFAULT_TOLERANCE_SECONDS: Final = 300
MAX_WEBHOOK_EVENTS: Final = 1000
MAX_SIGNATURE_HEADER: Final = 1024


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
        address = address_in(email) if email else None
        if address is None and not message_id:
            raise ValueError(f"events[{index}] needs an email or a message_id")
        events.append(
            FeedbackEvent(
                kind=kind,
                recipients=(address,) if address else (),
                message_id=message_id[:255] if message_id else None,
                detail=clean(detail)[:40] or kind.value,
            )
        )
    return events
