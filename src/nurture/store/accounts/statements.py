"""The statements a subscriber's lifecycle shares: their status, consent events, confirmation
emails, and the suppression list, each run in the caller's transaction."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Final

from sqlalchemy import insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from nurture.engine.ports import ConsentRecord, DeliveryKind, DeliveryStatus
from nurture.store.models import (
    Subscriber,
    Suppression,
    consent_event_table,
    delivery_table,
    suppression_table,
)
from nurture.store.rules import address_hash

# Deliveries nobody has picked up yet; leased (`sending`) rows belong to a dispatcher.
WAITING: Final = (DeliveryStatus.QUEUED.value, DeliveryStatus.DEFERRED.value)


def subscriber_status(conn: Connection, subscriber_id: uuid.UUID) -> str | None:
    status: str | None = conn.execute(
        select(Subscriber.status).where(Subscriber.id == subscriber_id)
    ).scalar_one_or_none()
    return status


def is_suppressed(conn: Connection, email: str) -> bool:
    found = conn.execute(
        select(Suppression.id).where(Suppression.address_sha256 == address_hash(email))
    ).first()
    return found is not None


def suppress(conn: Connection, digest: str, reason: str, now: datetime) -> None:
    """Put an address hash on the suppression list, unless it is there already."""
    values = {"id": uuid.uuid4(), "address_sha256": digest, "reason": reason, "at": now}
    dialect = conn.dialect.name
    if dialect == "postgresql":
        conn.execute(postgresql.insert(suppression_table).values(**values)
                     .on_conflict_do_nothing(index_elements=["address_sha256"]))
    elif dialect == "sqlite":
        conn.execute(sqlite.insert(suppression_table).values(**values)
                     .on_conflict_do_nothing(index_elements=["address_sha256"]))
    else:
        raise ValueError(f"unsupported database dialect {dialect}")


def add_consent(
    conn: Connection, subscriber_id: uuid.UUID, consent: ConsentRecord, now: datetime
) -> None:
    conn.execute(insert(consent_event_table).values(
        id=uuid.uuid4(), subscriber_id=subscriber_id, kind=consent.kind,
        source=consent.source[:200], at=now, ip=consent.ip,
        user_agent=consent.user_agent[:512] if consent.user_agent else None,
        consent_text_sha256=consent.consent_text_sha256,
    ))


def queue_confirmation(conn: Connection, subscriber_id: uuid.UUID, now: datetime) -> None:
    conn.execute(insert(delivery_table).values(
        id=uuid.uuid4(), kind=DeliveryKind.CONFIRMATION.value, subscriber_id=subscriber_id,
        enrollment_id=None, step_key=None, status=DeliveryStatus.QUEUED.value, due_at=now,
        attempts=0, lease_owner=None, lease_expires_at=None, message_id=None, smtp_code=None,
        last_error=None, skip_reason=None, content_version=None, created_at=now, sent_at=None,
    ))
