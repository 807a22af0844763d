"""Events a subscriber reports (a booked consult): end the sequences that exit on it, start follow-ups."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.engine import Engine

from nurture.content.library import Content
from nurture.domain.people import Person
from nurture.domain.reasons import KNOWN_EXIT_EVENTS
from nurture.engine.enrollment import new_enrollment
from nurture.engine.ports import ConsentRecord, SubscriberStatus
from nurture.store.accounts.store import AccountStore
from nurture.store.events import end_enrollments
from nurture.store.experiments import record_conversion
from nurture.store.sql.store import SqlStore

log = logging.getLogger(__name__)

CONSULT_BOOKED = "consult_booked"
PARTNER_SAID_YES = "partner_said_yes"
STARTED_SOLO = "started_solo"


class UnknownEvent(ValueError):
    """The event name is not one nurture knows."""


@dataclass(frozen=True)
class EventOutcome:
    found: bool
    ended: int = 0
    started: tuple[str, ...] = ()


def record_event(engine: Engine, content: Content, subscriber_id: uuid.UUID, event: str, *,
                 source: str, now: datetime) -> EventOutcome:
    """Apply `event` for an active subscriber; repeating it changes nothing more."""
    if event not in KNOWN_EXIT_EVENTS:
        raise UnknownEvent(f"unknown event '{event}'; known: {', '.join(sorted(KNOWN_EXIT_EVENTS))}")
    account = AccountStore(engine).account(subscriber_id)
    if account is None or account.status is not SubscriberStatus.ACTIVE:
        return EventOutcome(found=False)
    # Kept with its time whatever it ends: experiments count it within their window after a send.
    record_conversion(engine, subscriber_id, event, now)
    open_keys = {item.sequence_key for item in account.enrollments}
    exiting = [key for key in open_keys
               if key in content.sequences and event in content.sequences[key].exit_on]
    ended = end_enrollments(engine, subscriber_id, exiting, reason=event, now=now)
    follow_ups = []
    if ended:
        for key in exiting:
            target = dict(content.sequences[key].follow_ups).get(event)
            if target is not None and target not in open_keys:
                follow_ups.append(target)
    person = Person(email=account.email, first_name=account.first_name, time_zone=account.time_zone,
                    hesitations=account.hesitations, discreet=account.discreet, locale=account.locale)
    consent = ConsentRecord(kind="event", source=f"{event} via {source}")
    items = [new_enrollment(person, content, key, consent, now) for key in follow_ups]
    results = SqlStore(engine).enroll(items, now=now) if items else []
    started = tuple(key for key, result in zip(follow_ups, results, strict=True) if result.created)
    log.info("event recorded", extra={"event": event, "ended": ended, "started": len(started)})
    return EventOutcome(found=True, ended=ended, started=started)
