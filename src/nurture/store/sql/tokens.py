"""The deployment's token buckets and daily caps in SQL: each take is one short transaction that
locks their rows (FOR UPDATE on PostgreSQL; SQLite serializes writers), refills the buckets to
`now`, starts a cap's count again on a new day, and takes the same number from each."""

from __future__ import annotations

import math
from collections.abc import Sequence as Seq
from typing import Any

from sqlalchemy import Connection, Engine, select, update
from sqlalchemy.dialects.postgresql import insert as postgres_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from nurture.engine.shared_rate import Bucket, DayCap, Grant
from nurture.store.models import send_budget_table

# A cap's row holds the day's sends in `tokens` and the day's ordinal in `updated`.


class SqlTokenStore:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._insert = postgres_insert if engine.dialect.name == "postgresql" else sqlite_insert

    def take(self, buckets: Seq[Bucket], wanted: int, now: float, *,
             caps: Seq[DayCap] = ()) -> Grant:
        with self._engine.begin() as conn:
            rows = self._rows(conn, buckets, caps, now)
            # Refilled to now; a clock that stepped back refills nothing rather than taking.
            level = {b.name: min(b.capacity, rows[b.name][0]
                                 + b.rate * max(0.0, now - rows[b.name][1])) for b in buckets}
            used = {c.name: rows[c.name][0] if rows[c.name][1] == c.day else 0.0 for c in caps}
            room = [math.floor(tokens) for tokens in level.values()]
            room += [c.limit - int(used[c.name]) for c in caps]
            granted = max(0, min([wanted, *room]))
            for bucket in buckets:
                # Never moved back: a process whose clock reads a little earlier than the last
                # taker's must not be given that stretch of refill a second time.
                conn.execute(update(send_budget_table)
                             .where(send_budget_table.c.name == bucket.name)
                             .values(tokens=level[bucket.name] - granted,
                                     updated=max(now, rows[bucket.name][1])))
            for cap in caps:
                conn.execute(update(send_budget_table)
                             .where(send_budget_table.c.name == cap.name)
                             .values(tokens=used[cap.name] + granted, updated=float(cap.day)))
        left = min((c.limit - int(used[c.name]) - granted for c in caps), default=None)
        if granted or any(c.limit - int(used[c.name]) <= 0 for c in caps):
            return Grant(granted, 0.0, left)
        return Grant(0, max((1 - level[b.name]) / b.rate for b in buckets), left)

    def _rows(self, conn: Connection, buckets: Seq[Bucket], caps: Seq[DayCap],
              now: float) -> dict[str, tuple[float, float]]:
        table = send_budget_table
        names = [bucket.name for bucket in buckets] + [cap.name for cap in caps]
        query = select(table.c.name, table.c.tokens, table.c.updated).where(
            table.c.name.in_(names)).order_by(table.c.name)
        if self._engine.dialect.name == "postgresql":
            query = query.with_for_update()
        rows = {name: (tokens, updated) for name, tokens, updated in conn.execute(query)}
        missing: list[dict[str, Any]] = [
            {"name": b.name, "tokens": b.capacity, "updated": now}
            for b in buckets if b.name not in rows]
        missing += [{"name": c.name, "tokens": 0.0, "updated": float(c.day)}
                    for c in caps if c.name not in rows]
        if missing:
            # A new bucket starts full and a new cap at none sent; a second process creating
            # them at once changes nothing.
            conn.execute(self._insert(table).values(missing)
                         .on_conflict_do_nothing(index_elements=["name"]))
            rows = {name: (tokens, updated) for name, tokens, updated in conn.execute(query)}
        return rows


def day_counts(engine: Engine, names: Seq[str]) -> dict[str, tuple[int, int]]:
    """By cap name: (sends counted, the day's ordinal they were counted on)."""
    table = send_budget_table
    with engine.connect() as conn:
        return {name: (int(tokens), int(updated)) for name, tokens, updated in conn.execute(
            select(table.c.name, table.c.tokens, table.c.updated).where(table.c.name.in_(names)))}
