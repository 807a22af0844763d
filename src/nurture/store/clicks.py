"""What first-party click counting keeps: one row per delivery (how many clicks, the first and the
last), counted with one upsert, read by experiments and purged with the retention period."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import delete, literal, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql.elements import ColumnElement

from nurture.store.models import ClickCount, click_count_table, delivery_table
from nurture.store.rules import require_aware
from nurture.store.types import UTCDateTime


def _dialect_insert(engine: Engine) -> Callable[[Any], Any]:
    return postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert


def record_click(engine: Engine, delivery_id: uuid.UUID, now: datetime) -> bool:
    """Count one click on the delivery's links; False when the delivery is gone (purged or
    erased), which counts nothing."""
    require_aware("now", now)
    at = literal(now, UTCDateTime())
    # INSERT ... SELECT from the delivery: a purged delivery yields no row, hence no count.
    source = select(delivery_table.c.id, literal(1), at, at).where(delivery_table.c.id == delivery_id)
    statement = _dialect_insert(engine)(click_count_table).from_select(
        ["delivery_id", "clicks", "first_at", "last_at"], source)
    statement = statement.on_conflict_do_update(
        index_elements=[click_count_table.c.delivery_id],
        set_={"clicks": click_count_table.c.clicks + 1, "last_at": statement.excluded.last_at}
    ).returning(click_count_table.c.delivery_id)
    try:
        with engine.begin() as conn:
            # RETURNING rather than rowcount, which drivers report differently for INSERT ... SELECT.
            return conn.execute(statement).first() is not None
    except IntegrityError:
        return False  # the delivery went between the SELECT and the INSERT


def clicks_of(engine: Engine, delivery_id: uuid.UUID) -> ClickCount | None:
    """The delivery's count, detached; None when nothing was clicked (or it was purged)."""
    with engine.connect() as conn:
        row = conn.execute(select(click_count_table)
                           .where(click_count_table.c.delivery_id == delivery_id)).one_or_none()
    if row is None:
        return None
    return ClickCount(delivery_id=row.delivery_id, clicks=row.clicks, first_at=row.first_at,
                      last_at=row.last_at)


def purge_clicks(engine: Engine, *, older_than: datetime) -> int:
    """Delete the counts last clicked before `older_than` (the retention purge)."""
    require_aware("older_than", older_than)
    with engine.begin() as conn:
        return int(conn.execute(delete(click_count_table)
                                .where(click_count_table.c.last_at < older_than)).rowcount)


def delete_clicks_of(conn: Connection, subscriber_ids: ColumnElement[bool]) -> None:
    """Delete the counts of the deliveries `subscriber_ids` selects (a condition on
    delivery.subscriber_id), before those deliveries are deleted in the same transaction."""
    deliveries = select(delivery_table.c.id).where(subscriber_ids)
    conn.execute(delete(click_count_table).where(click_count_table.c.delivery_id.in_(deliveries)))
