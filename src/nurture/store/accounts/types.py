"""What a subscriber's own pages hand the store and get back: a pending signup, the outcomes of
signing up and confirming, and the account as their pages show it."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from nurture.domain.model import Profile
from nurture.engine.ports import ConsentRecord, EnrollmentStatus, SubscriberStatus


class SignupOutcome(StrEnum):
    QUEUED = "queued"
    """A confirmation email was queued."""
    RECENTLY_QUEUED = "recently_queued"
    """Still pending, and a confirmation is waiting or went out within the resend interval."""
    ALREADY_ACTIVE = "already_active"
    SUPPRESSED = "suppressed"
    UNAVAILABLE = "unavailable"
    """The address bounced (or is otherwise closed): nothing is queued."""


class ConfirmOutcome(StrEnum):
    CONFIRMED = "confirmed"
    ALREADY_CONFIRMED = "already_confirmed"
    NOT_FOUND = "not_found"
    REFUSED = "refused"
    """Not pending any more (unsubscribed since, bounced) or suppressed: an old link must not
    bring anyone back."""


@dataclass(frozen=True)
class PendingSignup:
    email: str  # normalized
    first_name: str | None
    time_zone: str
    hesitations: frozenset[str]
    discreet: bool
    locale: str
    consent: ConsentRecord


@dataclass(frozen=True)
class SignupResult:
    outcome: SignupOutcome
    subscriber_id: uuid.UUID | None


@dataclass(frozen=True)
class EnrollmentState:
    id: uuid.UUID
    sequence_key: str
    status: EnrollmentStatus
    paused_until: datetime | None


@dataclass(frozen=True)
class Account:
    """A subscriber as their own pages show them, with their open enrollments."""

    id: uuid.UUID
    email: str
    first_name: str | None
    status: SubscriberStatus
    locale: str
    time_zone: str
    hesitations: frozenset[str]
    discreet: bool
    created_at: datetime
    confirmed_at: datetime | None
    enrollments: tuple[EnrollmentState, ...]

    @property
    def profile(self) -> Profile:
        return Profile(time_zone=self.time_zone, hesitations=self.hesitations,
                       discreet=self.discreet, locale=self.locale)

    @property
    def paused_until(self) -> datetime | None:
        """The end of the pause when every open enrollment is paused, else None."""
        if not self.enrollments or any(
            item.status is not EnrollmentStatus.PAUSED for item in self.enrollments
        ):
            return None
        ends = [item.paused_until for item in self.enrollments if item.paused_until is not None]
        return max(ends) if ends else None

    @property
    def is_paused(self) -> bool:
        return bool(self.enrollments) and all(
            item.status is EnrollmentStatus.PAUSED for item in self.enrollments
        )
