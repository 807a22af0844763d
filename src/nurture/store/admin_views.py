"""What the operator pages read from the database, as plain values: whether the database answers."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.engine import Engine


def database_answers(engine: Engine) -> None:
    """Runs a trivial query; raises whatever the driver raises when the database does not answer."""
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))
