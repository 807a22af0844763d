"""Storage: SQLAlchemy models, the SqlStore implementing the ports, engines and migrations."""

from nurture.store.database import (
    DatabaseNotMigrated,
    current_revision,
    ensure_migrated,
    head_revision,
    make_engine,
    session_factory,
    upgrade,
)
from nurture.store.models import address_hash
from nurture.store.repository import DeliveryView, EnrollmentView, SqlStore

__all__ = [
    "DatabaseNotMigrated",
    "DeliveryView",
    "EnrollmentView",
    "SqlStore",
    "address_hash",
    "current_revision",
    "ensure_migrated",
    "head_revision",
    "make_engine",
    "session_factory",
    "upgrade",
]
