"""Engines and sessions for SQLite and PostgreSQL, and the alembic migrations that shape them."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 30_000


class DatabaseNotMigrated(Exception):
    """The schema is not at the revision this code needs; `nurture db upgrade` fixes it."""


def _normalize(url: str | URL) -> URL:
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def describe_url(url: str | URL) -> str:
    """The URL without its password, safe to log and show."""
    return make_url(url).render_as_string(hide_password=True)


def make_engine(url: str | URL) -> Engine:
    """An engine set up for this project's concurrency: SQLite in WAL mode with writers
    serialized by BEGIN IMMEDIATE, PostgreSQL through psycopg 3 with dead connections replaced
    on checkout."""
    parsed = _normalize(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return _sqlite_engine(parsed)
    if backend == "postgresql":
        return create_engine(parsed, pool_pre_ping=True)
    raise ValueError(f"unsupported database {describe_url(parsed)}: use sqlite or postgresql")


def _sqlite_engine(url: URL) -> Engine:
    database = url.database or ""
    in_memory = database in ("", ":memory:") or database.startswith("file::memory:")
    if not in_memory and not database.startswith("file:"):
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: sqlite3.Connection, record: ConnectionPoolEntry) -> None:
        # pysqlite's own BEGIN (deferred, and only before DML) would let two writers both start
        # and then fail with "database is locked" mid-transaction; we emit BEGIN IMMEDIATE instead.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            if not in_memory:
                cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions whose objects stay readable after commit (the web layer renders them afterwards)."""
    return sessionmaker(engine, expire_on_commit=False)


def alembic_config(url: str | URL | None = None) -> Config:
    """An alembic configuration built in code, so migrations run from an installed package too."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url is not None:
        # Kept out of the ini options: ConfigParser would interpolate a '%' in a password.
        config.attributes["url"] = _normalize(url)
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise RuntimeError(f"no migrations found in {MIGRATIONS_DIR}")
    return head


def upgrade(url: str | URL, revision: str = "head") -> None:
    """Run the migrations up to `revision` (all of them by default) in one transaction."""
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            config = alembic_config(url)
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
            connection.commit()
    finally:
        engine.dispose()
    log.info("database %s upgraded to %s", describe_url(url), revision)


def current_revision(engine: Engine) -> str | None:
    """The alembic revision the database is at; None when it was never migrated."""
    with engine.connect() as connection:
        context = MigrationContext.configure(connection)
        revision: str | None = context.get_current_revision()
        return revision


def ensure_migrated(engine: Engine) -> None:
    """Raise DatabaseNotMigrated unless the database is at the head revision of this code."""
    current = current_revision(engine)
    head = head_revision()
    if current != head:
        raise DatabaseNotMigrated(
            f"the database at {describe_url(engine.url)} is not migrated "
            f"(at revision {current or 'none'}, need {head}); run `nurture db upgrade`"
        )


def database_answers(engine: Engine) -> None:
    """Runs a trivial query; raises whatever the driver raises when the database does not answer."""
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))
