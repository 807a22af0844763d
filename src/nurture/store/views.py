"""What an operator or a test sees of one delivery or one enrollment, whichever store holds it."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from nurture.engine.ports import DeliveryKind, DeliveryStatus, EnrollmentStatus


@dataclass(frozen=True)
class DeliveryView:
    """One delivery row as seen by an operator or a test."""

    id: uuid.UUID
    kind: DeliveryKind
    sequence_key: str | None
    step_key: str | None
    status: DeliveryStatus
    due_at: datetime
    attempts: int
    lease_owner: str | None
    lease_expires_at: datetime | None
    sent_at: datetime | None
    message_id: str | None
    smtp_code: int | None
    last_error: str | None
    skip_reason: str | None
    content_version: str | None
    variant: str | None = None
    """The experiment arm recorded on it, if any."""
    relay: str | None = None
    """The relay that answered it last, by name (several relays configured)."""


@dataclass(frozen=True)
class EnrollmentView:
    """One enrollment row as seen by an operator or a test."""

    id: uuid.UUID
    sequence_key: str
    status: EnrollmentStatus
    last_step_key: str | None
    last_sent_at: datetime | None
    enrolled_at: datetime
    ended_at: datetime | None
    end_reason: str | None
