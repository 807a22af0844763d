"""Many-row SQL in few statements, on both databases: IN lists cut to SQLite's limit or one
PostgreSQL array, and bulk inserts and updates as executemany (SQLite) or unnest() (PostgreSQL)."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from collections.abc import Sequence as Seq
from typing import Any, Final, TypeVar

from sqlalchemy import (
    JSON,
    BindParameter,
    ColumnElement,
    Engine,
    Table,
    Text,
    any_,
    bindparam,
    cast,
    func,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.orm import QueryableAttribute

from nurture.store.crypto import EncryptedList
from nurture.store.rules import OPEN_ENROLLMENT

T = TypeVar("T")
Row = Mapping[str, Any]
Column = ColumnElement[Any] | QueryableAttribute[Any]

# SQLite binds one parameter per IN item; this keeps lists far below its limit. PostgreSQL gets
# one array parameter instead, whatever the length.
SQLITE_IN_CHUNK: Final = 1000


def expression(column: Column) -> ColumnElement[Any]:
    return column.expression if isinstance(column, QueryableAttribute) else column


def is_open(status: Column) -> ColumnElement[bool]:
    """An enrollment status that is active or paused."""
    # Spelled as ORs of equalities: an expanding IN cannot go into SQLite's executemany.
    return or_(*(status == value for value in OPEN_ENROLLMENT))


class Bulk:
    """The bulk statements of one engine; each takes the connection of the caller's transaction."""

    def __init__(self, engine: Engine) -> None:
        self._dialect = engine.dialect
        self.postgres = engine.dialect.name == "postgresql"

    def batches(self, values: Seq[T]) -> Iterator[Seq[T]]:
        """The values in slices that fit one IN list: all at once on PostgreSQL."""
        if self.postgres:
            if values:
                yield values
            return
        for start in range(0, len(values), SQLITE_IN_CHUNK):
            yield values[start : start + SQLITE_IN_CHUNK]

    def among(self, column: Column, values: Seq[Any]) -> ColumnElement[bool]:
        """`column IN values`; on PostgreSQL `= ANY(array)`, one parameter however many values,
        which keeps the statement text (and its cached plan) the same for every batch size."""
        column = expression(column)
        if self.postgres:
            array = bindparam(None, list(values), type_=postgresql.ARRAY(column.type))
            return column == any_(array)
        return column.in_(values)

    def insert(
        self, conn: Connection, table: Table, rows: Seq[Row], *, conflict: Seq[str] | None = None
    ) -> None:
        """Insert rows that all have the same keys; with `conflict`, rows that would duplicate
        that unique key are left out instead of failing the transaction."""
        if not rows:
            return
        if self.postgres:
            names = list(rows[0])
            columns = self._unnest(table, rows, names)
            # WHERE true: without it, ON CONFLICT after a FROM item is ambiguous to PostgreSQL.
            source = select(*(columns[name] for name in names)).where(true())
            pg_stmt = postgresql.insert(table).from_select(names, source)
            if conflict:
                pg_stmt = pg_stmt.on_conflict_do_nothing(index_elements=list(conflict))
            conn.execute(pg_stmt)
            return
        sqlite_stmt = sqlite.insert(table)
        if conflict:
            sqlite_stmt = sqlite_stmt.on_conflict_do_nothing(index_elements=list(conflict))
        conn.execute(sqlite_stmt, list(rows))

    def update(
        self,
        conn: Connection,
        table: Table,
        key: str,
        rows: Seq[Row],
        *conditions: ColumnElement[bool],
    ) -> None:
        """UPDATE table SET <the other keys of each row> WHERE table.<key> = row[key] AND
        conditions; every row has the same keys, and no two rows the same key value."""
        if not rows:
            return
        names = list(rows[0])
        if self.postgres:
            columns = self._unnest(table, rows, names)
            conn.execute(
                update(table)
                .values({name: columns[name] for name in names if name != key})
                .where(
                    table.c[key] == columns[key],
                    # The same keys again as an array: the planner then reads the rows by the
                    # key's index. Joined with unnest() alone, on statistics taken before a
                    # claim, it may scan every row of a status it thinks rare, for each write.
                    self.among(table.c[key], [row[key] for row in rows]),
                    *conditions,
                )
            )
            return
        conn.execute(
            update(table).where(table.c[key] == bindparam("b_key"), *conditions),
            [{"b_key": row[key], **{n: v for n, v in row.items() if n != key}} for row in rows],
        )

    def _unnest(
        self, table: Table, rows: Seq[Row], names: Seq[str]
    ) -> dict[str, ColumnElement[Any]]:
        """PostgreSQL: the rows as a derived table `unnest(array, array, ...)`, one array per
        column, so a whole batch travels as a single statement with one parameter per column."""
        arrays = [self._array(table, rows, name) for name in names]
        derived = func.unnest(*arrays).table_valued(*names).render_derived()
        return {
            name: cast(derived.c[name], JSON)
            if isinstance(table.c[name].type, JSON)
            else derived.c[name]
            for name in names
        }

    def _array(self, table: Table, rows: Seq[Row], name: str) -> BindParameter[Any]:
        column_type = table.c[name].type
        if isinstance(column_type, EncryptedList):
            # A list value would read as a nested array: encrypt here and send text.
            return bindparam(
                None,
                [column_type.process_bind_param(row[name], self._dialect) for row in rows],
                type_=postgresql.ARRAY(Text),
            )
        if isinstance(column_type, JSON):
            # A list value would read as a nested array: pass JSON as text, cast it back.
            return bindparam(
                None,
                [None if row[name] is None else json.dumps(row[name]) for row in rows],
                type_=postgresql.ARRAY(Text),
            )
        return bindparam(None, [row[name] for row in rows], type_=postgresql.ARRAY(column_type))
