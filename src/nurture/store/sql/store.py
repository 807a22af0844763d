"""SqlStore: the delivery, enrollment and feedback ports on SQLite and PostgreSQL, one job per
module (claims, leases, acceptances, outcomes, enrollments, suppressions, inspection) behind one object."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from collections.abc import Sequence as Seq
from datetime import datetime, timedelta

from sqlalchemy import Engine

from nurture.engine.ports import (
    Assign,
    ClaimedDelivery,
    EnrollResult,
    LiveState,
    NewEnrollment,
    Outcome,
    Progress,
    SubscriberStatus,
)
from nurture.store.sql.acceptances import Acceptances
from nurture.store.sql.claims import Claims
from nurture.store.sql.enrollments import Enrollments
from nurture.store.sql.holds import hold_destination
from nurture.store.sql.inspection import Inspection
from nurture.store.sql.leases import Leases
from nurture.store.sql.outcomes import Outcomes
from nurture.store.sql.suppressions import Suppressions
from nurture.store.views import DeliveryView, EnrollmentView


class SqlStore:
    """Deliveries, enrollments and suppressions in one SQL database.

    Every public method is one short transaction. On SQLite it starts with BEGIN IMMEDIATE (see
    `database.make_engine`), which serializes writers; on PostgreSQL claims use FOR UPDATE SKIP
    LOCKED, so several schedulers share the queue without waiting for each other. Many-row writes
    are one statement per table and batch: executemany on SQLite, unnest() arrays on PostgreSQL
    (see `bulk`).
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._claims = Claims(engine)
        self._leases = Leases(engine)
        self._acceptances = Acceptances(engine)
        self._outcomes = Outcomes(engine)
        self._enrollments = Enrollments(engine)
        self._suppressions = Suppressions(engine)
        self._inspection = Inspection(engine)

    @property
    def engine(self) -> Engine:
        return self._engine

    # -- DeliveryStore -------------------------------------------------------------------------

    def claim_due(
        self, *, now: datetime, owner: str, limit: int, lease: timedelta,
        assign: Assign | None = None,
    ) -> list[ClaimedDelivery]:
        return self._claims.claim_due(now=now, owner=owner, limit=limit, lease=lease,
                                      assign=assign)

    def record(self, outcomes: Seq[Outcome], *, owner: str) -> None:
        self._outcomes.record(outcomes, owner=owner)

    def mark_accepted(self, outcomes: Seq[Outcome], *, owner: str) -> None:
        self._acceptances.mark_accepted(outcomes, owner=owner)

    def release(self, delivery_ids: Seq[uuid.UUID], *, owner: str) -> None:
        self._leases.release(delivery_ids, owner=owner)

    def release_all(self, owner: str) -> int:
        """Give back every lease `owner` holds (graceful shutdown); returns how many."""
        return self._leases.release_all(owner)

    def reap_expired(self, now: datetime) -> int:
        """Return `sending` rows whose lease expired at `now` to the queue; returns how many."""
        return self._leases.reap_expired(now)

    def recheck(
        self, delivery_ids: Seq[uuid.UUID], *, owner: str, now: datetime, lease: timedelta
    ) -> dict[uuid.UUID, LiveState]:
        """Renew `owner`'s lease on these deliveries and return their live state (see
        `Leases.recheck`)."""
        return self._leases.recheck(delivery_ids, owner=owner, now=now, lease=lease)

    def hold_destination(self, domains: Seq[str], *, until: datetime, reason: str) -> int:
        return hold_destination(self.engine, domains, until=until, reason=reason)

    # -- EnrollmentStore -----------------------------------------------------------------------

    def enroll(
        self, items: Seq[NewEnrollment], *, now: datetime, progress: Progress | None = None
    ) -> list[EnrollResult]:
        return self._enrollments.enroll(items, now=now, progress=progress)

    # -- FeedbackStore (bounces and complaints) ------------------------------------------------

    def feedback_targets(
        self, *, emails: Seq[str], delivery_ids: Seq[uuid.UUID]
    ) -> tuple[dict[str, uuid.UUID], dict[uuid.UUID, uuid.UUID]]:
        """Subscriber ids by (normalized) address and by delivery id, for those that exist."""
        return self._suppressions.feedback_targets(emails=emails, delivery_ids=delivery_ids)

    def suppress_subscribers(
        self, reasons: Mapping[uuid.UUID, str], *, status: SubscriberStatus, now: datetime
    ) -> int:
        """Suppress these subscribers (see `Suppressions.suppress_subscribers`); returns how many
        addresses were new on the list."""
        return self._suppressions.suppress_subscribers(reasons, status=status, now=now)

    # -- Inspection for the CLI and tests ------------------------------------------------------

    def counts_by_status(self) -> dict[str, int]:
        """Deliveries per status, with every status present (zero when none)."""
        return self._inspection.counts_by_status()

    def deliveries_for(self, email: str) -> list[DeliveryView]:
        """Every delivery of the subscriber with this (normalized) address, oldest first."""
        return self._inspection.deliveries_for(email)

    def enrollments_for(self, email: str) -> list[EnrollmentView]:
        """Every enrollment of the subscriber with this (normalized) address, oldest first."""
        return self._inspection.enrollments_for(email)

    def is_suppressed(self, email: str) -> bool:
        return self._suppressions.is_suppressed(email)
