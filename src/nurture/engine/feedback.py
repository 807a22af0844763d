"""Acting on feedback: bounces and complaints applied through the store's port (suppressions, ended
enrollments), and the reports of a maildir read and applied in one go."""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Iterable, Iterator
from collections.abc import Sequence as Seq
from dataclasses import dataclass, fields
from datetime import datetime
from pathlib import Path

from nurture.engine.feedback_reports import FeedbackEvent, FeedbackKind, parse_report
from nurture.engine.ports import FeedbackStore, SubscriberStatus

log = logging.getLogger(__name__)

# Our Message-IDs are `<{delivery_id.hex}@{domain}>` (decisions.message_id_for).
_OUR_MESSAGE_ID = re.compile(r"<?\s*([0-9a-f]{32})@([^>\s]+)\s*>?", re.IGNORECASE)


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
    return ((f"{entry.parent.name}/{entry.name}", entry.read_bytes())
            for entry in _message_files(_maildir_folders(path)))


def count_maildir(path: Path) -> int:
    """How many messages `read_maildir` would read, without reading them."""
    return sum(1 for _ in _message_files(_maildir_folders(path)))


def _maildir_folders(path: Path) -> list[Path]:
    folders = [folder for folder in (path / "new", path / "cur") if folder.is_dir()]
    if not folders:
        raise NotADirectoryError(f"{path} is not a maildir (it has no cur/ or new/ folder)")
    return folders


def _message_files(folders: Seq[Path]) -> Iterator[Path]:
    for folder in folders:
        for entry in sorted(folder.iterdir()):
            # Dot files are hidden by convention; tmp/ (messages being written) is never read.
            if entry.is_file() and not entry.name.startswith("."):
                yield entry


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
