"""Database fixtures: every test gets a fresh migrated SQLite file and PostgreSQL database.

PostgreSQL databases are copies of a template migrated once per session (procrastinate's approach),
so a test costs a CREATE DATABASE, not a migration run.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from nurture.store.database import MIGRATIONS_DIR, describe_url, make_engine, upgrade
from nurture.store.sql.store import SqlStore

DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def _schema_digest() -> str:
    """A short hash of the migration files: the schema a session's template is built from."""
    digest = hashlib.sha256()
    for path in sorted((MIGRATIONS_DIR / "versions").glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:10]


# Named after the schema: sessions in worktrees with other migrations share one server, and one
# session's template must not be rebuilt under another's tests with a different schema.
TEMPLATE_DB = f"nurture_test_template_{_schema_digest()}"
# Serializes template (re)creation and copies across pytest sessions sharing one server:
# CREATE DATABASE ... TEMPLATE fails while anyone else is connected to the template.
TEMPLATE_LOCK_KEY = 0x6E75727475726500

BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
]


def _admin_url() -> str:
    return os.environ.get("NURTURE_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL)


def _database_url(name: str) -> str:
    return make_url(_admin_url()).set(database=name).render_as_string(hide_password=False)


def _conninfo(url: str) -> str:
    """A libpq URL for psycopg from an SQLAlchemy one."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@contextmanager
def _admin() -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    # CREATE/DROP DATABASE refuse to run inside a transaction block.
    with psycopg.connect(_conninfo(_admin_url()), autocommit=True, connect_timeout=5) as conn:
        yield conn


@contextmanager
def _template_lock(conn: psycopg.Connection[tuple[object, ...]]) -> Iterator[None]:
    conn.execute("SELECT pg_advisory_lock(%s)", (TEMPLATE_LOCK_KEY,))
    try:
        yield
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", (TEMPLATE_LOCK_KEY,))


def _drop_database(conn: psycopg.Connection[tuple[object, ...]], name: str) -> None:
    conn.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE datname = %s AND pid <> pg_backend_pid()",
        (name,),
    )
    conn.execute(f'DROP DATABASE IF EXISTS "{name}"')


@pytest.fixture(scope="session")
def postgres_available() -> None:
    """Skip (fail when NURTURE_REQUIRE_POSTGRES=1) if the PostgreSQL server cannot be reached."""
    try:
        with _admin() as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as error:
        reason = f"PostgreSQL at {describe_url(_admin_url())} is unreachable: {error}".strip()
        if os.environ.get("NURTURE_REQUIRE_POSTGRES") == "1":
            pytest.fail(reason + " (NURTURE_REQUIRE_POSTGRES=1)", pytrace=False)
        pytest.skip(reason)


@pytest.fixture(scope="session")
def postgres_template(postgres_available: None) -> str:
    """The name of a database migrated to head, rebuilt at session start so model changes show."""
    with _admin() as conn, _template_lock(conn):
        _drop_database(conn, TEMPLATE_DB)
        conn.execute(f'CREATE DATABASE "{TEMPLATE_DB}"')
        upgrade(_database_url(TEMPLATE_DB))
    return TEMPLATE_DB


@contextmanager
def _postgres_database(template: str | None) -> Iterator[str]:
    name = f"nurture_test_{uuid.uuid4().hex[:12]}"
    with _admin() as conn:
        if template is None:
            conn.execute(f'CREATE DATABASE "{name}"')
        else:
            with _template_lock(conn):
                conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    try:
        yield _database_url(name)
    finally:
        with _admin() as conn:
            _drop_database(conn, name)


@contextmanager
def migrated_database(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[str]:
    """The URL of a fresh database migrated to head on `backend` ("sqlite" or "postgresql")."""
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'nurture.db'}"
        upgrade(url)
        yield url
        return
    template: str = request.getfixturevalue("postgres_template")
    with _postgres_database(template) as url:
        yield url


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of a fresh database migrated to head, on each backend."""
    with migrated_database(request.param, request, tmp_path) as url:
        yield url


@pytest.fixture(params=BACKENDS)
def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of a fresh database with no tables at all, for migration tests."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.db'}"
        return
    request.getfixturevalue("postgres_available")
    with _postgres_database(None) as url:
        yield url


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def store(engine: Engine) -> SqlStore:
    return SqlStore(engine)
