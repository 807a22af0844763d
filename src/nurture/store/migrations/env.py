"""Alembic environment: runs the migrations on the connection `database.upgrade` hands over."""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import URL, Connection

from nurture.store.database import make_engine
from nurture.store.models import Base

config = context.config
target_metadata = Base.metadata


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # Batch mode lets later migrations alter SQLite tables (it rebuilds them); with our own
        # BEGIN handling SQLite DDL is transactional, so a failed migration leaves nothing behind.
        render_as_batch=connection.dialect.name == "sqlite",
        transactional_ddl=True,
    )


def run_offline() -> None:
    url: URL = config.attributes["url"]
    context.configure(url=url, target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection: Connection | None = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = make_engine(config.attributes["url"])
    try:
        with engine.connect() as own_connection:
            _configure(own_connection)
            with context.begin_transaction():
                context.run_migrations()
            own_connection.commit()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
