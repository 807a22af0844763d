"""Marking leased rows as accepted by a relay in SQL: one prepared bulk UPDATE, cheap enough to run
every few replies so that a crash re-sends at most what was not yet marked. On PostgreSQL it goes
through a connection of its own that commits each statement without waiting for the disk."""

from __future__ import annotations

from collections.abc import Sequence as Seq
from typing import Any

from sqlalchemy import (
    Engine,
    Integer,
    String,
    TextClause,
    Uuid,
    bindparam,
    create_engine,
    event,
    text,
    update,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.sql.dml import Update

from nurture.engine.ports import DeliveryStatus, Outcome
from nurture.store.models import delivery_table
from nurture.store.types import UTCDateTime

SENDING = DeliveryStatus.SENDING.value

# One statement for the whole group, its text fixed, so that nothing is built or compiled per
# mark: the rows as unnest() arrays, found by the primary key, and only where this process still
# holds the lease (another owner's lease means another process decides that row now).
POSTGRES_MARK = text(
    "UPDATE delivery SET accepted_at = marked.accepted_at, smtp_code = marked.smtp_code, "
    "relay = marked.relay, content_version = marked.content_version "
    "FROM unnest(:ids, :accepted_at, :smtp_code, :relay, :content_version) "
    "AS marked(id, accepted_at, smtp_code, relay, content_version) "
    "WHERE delivery.id = marked.id AND delivery.id = ANY(:ids) "
    f"AND delivery.lease_owner = :owner AND delivery.status = '{SENDING}'"
).bindparams(
    bindparam("ids", type_=postgresql.ARRAY(Uuid())),
    bindparam("accepted_at", type_=postgresql.ARRAY(UTCDateTime())),
    bindparam("smtp_code", type_=postgresql.ARRAY(Integer())),
    bindparam("relay", type_=postgresql.ARRAY(String())),
    bindparam("content_version", type_=postgresql.ARRAY(String())),
)


def _sqlite_mark() -> Update:
    table = delivery_table
    return (
        update(table)
        .where(table.c.id == bindparam("b_id"), table.c.lease_owner == bindparam("owner"),
               table.c.status == SENDING)
        .values(accepted_at=bindparam("accepted_at"), smtp_code=bindparam("smtp_code"),
                relay=bindparam("relay"), content_version=bindparam("content_version"))
    )


def marking_engine(engine: Engine) -> Engine:
    """PostgreSQL: one pooled connection in autocommit with synchronous_commit off, made on the
    first mark. A mark is then one round trip: no BEGIN, no COMMIT, no ping on checkout (a dead
    connection fails the mark, which the dispatcher retries on a new one), and no wait for the
    WAL to reach the disk. A killed scheduler loses nothing by the last; only a crash of the
    database server itself could drop the last marks, whose rows are then sent again, as before
    marks existed. Never an email lost. The shared pool keeps its own settings for the records."""
    marking = create_engine(engine.url, pool_size=1, max_overflow=1, isolation_level="AUTOCOMMIT")

    # Set on each new connection rather than through the URL's `options`, which a deployment may
    # use for its own settings (a search_path, say).
    @event.listens_for(marking, "connect")
    def _commit_without_flush(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("SET synchronous_commit = off")
        finally:
            cursor.close()
        dbapi_connection.commit()

    return marking


class Acceptances:
    def __init__(self, engine: Engine) -> None:
        self._postgres = engine.dialect.name == "postgresql"
        self._engine = marking_engine(engine) if self._postgres else engine
        self._statement: TextClause | Update = POSTGRES_MARK if self._postgres else _sqlite_mark()

    def mark_accepted(self, outcomes: Seq[Outcome], *, owner: str) -> None:
        accepted = [outcome for outcome in outcomes if outcome.status is DeliveryStatus.SENT]
        if not accepted:
            return
        with self._engine.begin() as conn:
            conn.execute(self._statement, self._parameters(accepted, owner))

    def _parameters(self, accepted: Seq[Outcome], owner: str) -> Any:
        if self._postgres:
            return {
                "ids": [outcome.delivery_id for outcome in accepted],
                "accepted_at": [outcome.at for outcome in accepted],
                "smtp_code": [outcome.smtp_code for outcome in accepted],
                "relay": [outcome.relay for outcome in accepted],
                "content_version": [outcome.content_version for outcome in accepted],
                "owner": owner,
            }
        return [
            {"b_id": outcome.delivery_id, "owner": owner, "accepted_at": outcome.at,
             "smtp_code": outcome.smtp_code, "relay": outcome.relay,
             "content_version": outcome.content_version}
            for outcome in accepted
        ]
