"""Migrations build exactly the schema the models describe; an unmigrated database is refused."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from nurture.store.database import (
    DatabaseNotMigrated,
    current_revision,
    describe_url,
    ensure_migrated,
    head_revision,
    make_engine,
    upgrade,
)
from nurture.store.models import Base


def test_upgrade_builds_the_schema_of_the_models(empty_database_url: str) -> None:
    upgrade(empty_database_url)
    engine = make_engine(empty_database_url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            differences = compare_metadata(context, Base.metadata)
        assert differences == []
        assert current_revision(engine) == head_revision()
    finally:
        engine.dispose()


def test_upgrade_twice_is_harmless(empty_database_url: str) -> None:
    upgrade(empty_database_url)
    upgrade(empty_database_url)
    engine = make_engine(empty_database_url)
    try:
        ensure_migrated(engine)
    finally:
        engine.dispose()


def test_ensure_migrated_refuses_an_empty_database_then_passes(empty_database_url: str) -> None:
    engine = make_engine(empty_database_url)
    try:
        with pytest.raises(DatabaseNotMigrated) as raised:
            ensure_migrated(engine)
        message = str(raised.value)
        assert "nurture db upgrade" in message
        assert "at revision none" in message
        assert f"need {head_revision()}" in message

        upgrade(empty_database_url)
        ensure_migrated(engine)
    finally:
        engine.dispose()


def test_urls_are_described_without_their_password() -> None:
    described = describe_url("postgresql://nurture:s3cret@127.0.0.1:1/nowhere")
    assert "s3cret" not in described
    assert described == "postgresql://nurture:***@127.0.0.1:1/nowhere"
