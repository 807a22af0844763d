"""The deployment's token buckets in SQL: each take is one short transaction that locks the
buckets' rows (FOR UPDATE on PostgreSQL; SQLite serializes writers), refills them to `now`, and
takes the same number of tokens from each."""

from __future__ import annotations

import math
from collections.abc import Sequence as Seq

from sqlalchemy import Engine, select, update
from sqlalchemy.dialects.postgresql import insert as postgres_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from nurture.engine.shared_rate import Bucket
from nurture.store.models import send_budget_table


class SqlTokenStore:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._insert = postgres_insert if engine.dialect.name == "postgresql" else sqlite_insert

    def take(self, buckets: Seq[Bucket], wanted: int, now: float) -> tuple[int, float]:
        table = send_budget_table
        names = [bucket.name for bucket in buckets]
        query = select(table.c.name, table.c.tokens, table.c.updated).where(
            table.c.name.in_(names)).order_by(table.c.name)
        if self._engine.dialect.name == "postgresql":
            query = query.with_for_update()
        with self._engine.begin() as conn:
            rows = {name: (tokens, updated) for name, tokens, updated in conn.execute(query)}
            missing = [b for b in buckets if b.name not in rows]
            if missing:
                # A new bucket starts full; a second process creating it at once changes nothing.
                conn.execute(self._insert(table).values(
                    [{"name": b.name, "tokens": b.capacity, "updated": now} for b in missing]
                ).on_conflict_do_nothing(index_elements=["name"]))
                rows = {name: (tokens, updated) for name, tokens, updated in conn.execute(query)}
            # Refilled to now; a clock that stepped back refills nothing rather than taking.
            level = {b.name: min(b.capacity, rows[b.name][0]
                                 + b.rate * max(0.0, now - rows[b.name][1])) for b in buckets}
            granted = max(0, min(wanted, min(math.floor(tokens) for tokens in level.values())))
            for bucket in buckets:
                # Never moved back: a process whose clock reads a little earlier than the last
                # taker's must not be given that stretch of refill a second time.
                conn.execute(update(table).where(table.c.name == bucket.name)
                             .values(tokens=level[bucket.name] - granted,
                                     updated=max(now, rows[bucket.name][1])))
        if granted:
            return granted, 0.0
        return 0, max((1 - level[b.name]) / b.rate for b in buckets)
