"""Marking leased rows as accepted by a relay in SQL: one bulk UPDATE, on PostgreSQL outside a
transaction block, cheap enough to run every few replies so that a crash re-sends at most what
was not yet marked."""

from __future__ import annotations

from collections.abc import Sequence as Seq

from sqlalchemy import Engine

from nurture.engine.ports import DeliveryStatus, Outcome
from nurture.store.models import delivery_table
from nurture.store.sql.bulk import Bulk


class Acceptances:
    def __init__(self, engine: Engine) -> None:
        self._bulk = Bulk(engine)
        # On PostgreSQL one statement is its own transaction: autocommit spares the BEGIN and
        # COMMIT round trips, most of the cost of so small a write. SQLite is in the process,
        # and keeps its BEGIN IMMEDIATE (database.py), which autocommit would leave open.
        self._engine = (
            engine.execution_options(isolation_level="AUTOCOMMIT") if self._bulk.postgres
            else engine
        )

    def mark_accepted(self, outcomes: Seq[Outcome], *, owner: str) -> None:
        rows = [
            {
                "id": outcome.delivery_id,
                "accepted_at": outcome.at,
                "smtp_code": outcome.smtp_code,
                "relay": outcome.relay,
                "content_version": outcome.content_version,
            }
            for outcome in outcomes
            if outcome.status is DeliveryStatus.SENT
        ]
        if not rows:
            return
        table = delivery_table
        with self._engine.begin() as conn:
            # Only rows this process still holds: another owner's lease means another process
            # decides that row now.
            self._bulk.update(
                conn, table, "id", rows,
                table.c.lease_owner == owner,
                table.c.status == DeliveryStatus.SENDING.value,
            )
