"""Re-encrypting stored names and answers with the first data key (after adding a new key)."""

from __future__ import annotations

from sqlalchemy import Column, MetaData, Table, Text, Uuid, select, update
from sqlalchemy.engine import Engine

from nurture.engine.ports import Progress
from nurture.store.crypto import keyring

# The same table seen as plain text, so values are read and written exactly as stored.
_raw = Table("subscriber", MetaData(), Column("id", Uuid, primary_key=True),
             Column("first_name", Text), Column("hesitations", Text))


def rotate_data_keys(engine: Engine, *, batch: int = 1000,
                     progress: Progress | None = None) -> int:
    """Re-encrypt every subscriber's name and answers in one transaction; returns how many.
    `progress` hears (subscribers done, all of them) after each `batch`."""
    ring = keyring()
    changed = 0
    with engine.begin() as conn:
        rows = conn.execute(select(_raw.c.id, _raw.c.first_name, _raw.c.hesitations)).all()
        for start in range(0, len(rows), batch):
            for row in rows[start:start + batch]:
                values = {"hesitations": ring.rotate(row.hesitations or "[]")}
                if row.first_name is not None:
                    values["first_name"] = ring.rotate(row.first_name)
                conn.execute(update(_raw).where(_raw.c.id == row.id).values(**values))
                changed += 1
            if progress is not None:
                progress(changed, len(rows))
    if progress is not None and not rows:
        progress(0, 0)
    return changed
