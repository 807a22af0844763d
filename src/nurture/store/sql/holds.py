"""Holding a destination's waiting deliveries in SQL: one statement moves every queued or
deferred delivery to its domains that falls due before the hold ends, so that no claim picks
them up (and scans past them) while the destination asks us to slow down."""

from __future__ import annotations

from collections.abc import Sequence as Seq
from datetime import datetime

from sqlalchemy import Engine, or_, select, update

from nurture.store.models import Subscriber, delivery_table
from nurture.store.rules import CLAIMABLE, require_aware


def hold_destination(engine: Engine, domains: Seq[str], *, until: datetime, reason: str) -> int:
    require_aware("until", until)
    if not domains:
        return 0
    d = delivery_table
    # Addresses are stored normalized (lower case): a suffix match finds the domain's people.
    recipients = select(Subscriber.id).where(
        or_(*[Subscriber.email.endswith(f"@{domain}", autoescape=True) for domain in domains]))
    with engine.begin() as conn:
        return conn.execute(
            update(d).where(d.c.status.in_(CLAIMABLE), d.c.due_at < until,
                            d.c.subscriber_id.in_(recipients))
            .values(due_at=until, last_error=reason)).rowcount
