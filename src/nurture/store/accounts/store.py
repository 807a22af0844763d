"""AccountStore: a subscriber's own lifecycle as the web app drives it (signup and confirmation,
preferences, personal data), one job per module behind one object."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine

from nurture.engine.ports import ConsentRecord, NewEnrollment, Progress
from nurture.store.accounts.personal_data import PersonalData
from nurture.store.accounts.preferences import Preferences
from nurture.store.accounts.signup import Signups
from nurture.store.accounts.types import Account, ConfirmOutcome, PendingSignup, SignupResult


class AccountStore:
    """Each public method is one short transaction; none logs an address, a name or an answer."""

    def __init__(self, engine: Engine) -> None:
        self._signups = Signups(engine)
        self._preferences = Preferences(engine)
        self._personal_data = PersonalData(engine)

    # -- signup and confirmation ------------------------------------------------------------------

    def signup_pending(
        self, signup: PendingSignup, *, now: datetime, resend_interval: timedelta
    ) -> SignupResult:
        """Record a signup and queue one confirmation email, at most one per `resend_interval`
        (see `Signups.signup_pending`)."""
        return self._signups.signup_pending(signup, now=now, resend_interval=resend_interval)

    def confirm(
        self,
        subscriber_id: uuid.UUID,
        *,
        now: datetime,
        plan: Callable[[Account], NewEnrollment],
    ) -> ConfirmOutcome:
        """Activate a pending subscriber and enroll them in the sequence `plan` builds for them."""
        return self._signups.confirm(subscriber_id, now=now, plan=plan)

    # -- preferences ------------------------------------------------------------------------------

    def unsubscribe(
        self, subscriber_id: uuid.UUID, *, consent: ConsentRecord, now: datetime
    ) -> bool:
        """Stop everything for this subscriber now; False when there is no such subscriber."""
        return self._preferences.unsubscribe(subscriber_id, consent=consent, now=now)

    def pause(
        self, subscriber_id: uuid.UUID, *, until: datetime, consent: ConsentRecord, now: datetime
    ) -> int:
        """Pause every open enrollment until `until`; returns how many."""
        return self._preferences.pause(subscriber_id, until=until, consent=consent, now=now)

    def resume(self, subscriber_id: uuid.UUID, *, consent: ConsentRecord, now: datetime) -> int:
        """End the pause of every paused enrollment; returns how many."""
        return self._preferences.resume(subscriber_id, consent=consent, now=now)

    def update_answers(
        self, subscriber_id: uuid.UUID, hesitations: frozenset[str], *, now: datetime
    ) -> bool:
        """Replace the hesitations; later steps are chosen with the new answers."""
        return self._preferences.update_answers(subscriber_id, hesitations, now=now)

    def set_discreet(self, subscriber_id: uuid.UUID, discreet: bool, *, now: datetime) -> bool:
        return self._preferences.set_discreet(subscriber_id, discreet, now=now)

    def set_locale(self, subscriber_id: uuid.UUID, locale: str, *, now: datetime) -> bool:
        """The locale of the next emails; the caller checks it is one people can choose."""
        return self._preferences.set_locale(subscriber_id, locale, now=now)

    # -- personal data ----------------------------------------------------------------------------

    def account(self, subscriber_id: uuid.UUID) -> Account | None:
        return self._personal_data.account(subscriber_id)

    def subscriber_id(self, email: str) -> uuid.UUID | None:
        """The id of the subscriber with this normalized address, if there is one."""
        return self._personal_data.subscriber_id(email)

    def export(self, subscriber_id: uuid.UUID) -> dict[str, Any] | None:
        """Everything held about one subscriber, as JSON-ready data; None when nothing is held."""
        return self._personal_data.export(subscriber_id)

    def erase(self, subscriber_id: uuid.UUID, *, now: datetime) -> bool:
        """Delete the subscriber and all their rows, keeping the address hash suppressed."""
        return self._personal_data.erase(subscriber_id, now=now)

    def purge_unconfirmed(self, *, older_than: datetime, progress: Progress | None = None) -> int:
        """Delete signups never confirmed and untouched since `older_than`; returns how many."""
        return self._personal_data.purge_unconfirmed(older_than=older_than, progress=progress)

    def is_suppressed(self, email: str) -> bool:
        return self._personal_data.is_suppressed(email)
