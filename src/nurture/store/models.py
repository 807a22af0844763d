"""SQLAlchemy models of what the pipeline stores: subscribers, consent, enrollments, deliveries."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Final, cast

from sqlalchemy import (
    JSON,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    Uuid,
    false,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from nurture.engine.ports import DeliveryStatus, EnrollmentStatus, SubscriberStatus
from nurture.store.crypto import EncryptedList, EncryptedText
from nurture.store.types import UTCDateTime

# Stable constraint names, so later migrations can drop or alter them on both databases.
NAMING_CONVENTION: Final[dict[str, str]] = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

OPEN_ENROLLMENT_SQL: Final = "status IN ('active', 'paused')"
# Claim queries repeat these exact texts: SQLite uses a partial index only when the query's WHERE
# contains its condition as written (literals, not bound parameters).
CLAIMABLE_SQL: Final = "status IN ('queued', 'deferred')"
LEASED_SQL: Final = "status = 'sending'"
ASSIGNED_SQL: Final = "variant IS NOT NULL"
EXPERIMENT_SQL: Final = "experiment_key IS NOT NULL"
WINNER_SQL: Final = "kind = 'winner'"
CLAIMABLE_INDEX: Final = "ix_delivery_claimable_due_at"
LEASED_INDEX: Final = "ix_delivery_leased_lease_expires_at"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Subscriber(Base):
    __tablename__ = "subscriber"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    first_name: Mapped[str | None] = mapped_column(EncryptedText)
    locale: Mapped[str] = mapped_column(String(35), default="en")
    time_zone: Mapped[str] = mapped_column(String(64), default="UTC")
    hesitations: Mapped[list[str]] = mapped_column(EncryptedList, default=list)
    discreet: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str] = mapped_column(String(16), default=SubscriberStatus.PENDING.value)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ConsentEvent(Base):
    __tablename__ = "consent_event"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    subscriber_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("subscriber.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(String(32))
    source: Mapped[str] = mapped_column(String(200))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    ip: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(512))
    consent_text_sha256: Mapped[str | None] = mapped_column(String(64))


class Enrollment(Base):
    __tablename__ = "enrollment"
    __table_args__ = (
        # One open enrollment per (subscriber, sequence); ended ones stay as history.
        Index(
            "uq_enrollment_open_per_sequence",
            "subscriber_id",
            "sequence_key",
            unique=True,
            sqlite_where=text(OPEN_ENROLLMENT_SQL),
            postgresql_where=text(OPEN_ENROLLMENT_SQL),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    subscriber_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("subscriber.id", ondelete="CASCADE"), index=True
    )
    sequence_key: Mapped[str] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(16), default=EnrollmentStatus.ACTIVE.value)
    paused_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_step_key: Mapped[str | None] = mapped_column(String(100))
    last_sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    content_version: Mapped[str] = mapped_column(String(128))
    enrolled_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    end_reason: Mapped[str | None] = mapped_column(String(200))


class Delivery(Base):
    __tablename__ = "delivery"
    __table_args__ = (
        # The database, not the scheduler, makes a double enqueue of a step impossible.
        UniqueConstraint("enrollment_id", "step_key"),
        Index("ix_delivery_status_due_at", "status", "due_at"),
        # Claiming reads only the queue head in due order; these stay small and ordered however
        # many sent rows pile up, so a claim never sorts the whole backlog.
        Index(
            CLAIMABLE_INDEX,
            "due_at",
            sqlite_where=text(CLAIMABLE_SQL),
            postgresql_where=text(CLAIMABLE_SQL),
        ),
        # A claim that assigns reads the subscriber's earlier arms; results read an experiment's
        # rows. Both stay as small as the experiments are.
        Index("ix_delivery_assigned_subscriber_id", "subscriber_id",
              sqlite_where=text(ASSIGNED_SQL), postgresql_where=text(ASSIGNED_SQL)),
        Index("ix_delivery_experiment_key", "experiment_key",
              sqlite_where=text(EXPERIMENT_SQL), postgresql_where=text(EXPERIMENT_SQL)),
        Index(
            LEASED_INDEX,
            "lease_expires_at",
            sqlite_where=text(LEASED_SQL),
            postgresql_where=text(LEASED_SQL),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    kind: Mapped[str] = mapped_column(String(16))
    subscriber_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("subscriber.id", ondelete="CASCADE"), index=True
    )
    enrollment_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("enrollment.id", ondelete="CASCADE")
    )
    step_key: Mapped[str | None] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(16), default=DeliveryStatus.QUEUED.value)
    due_at: Mapped[datetime] = mapped_column(UTCDateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    lease_owner: Mapped[str | None] = mapped_column(String(200))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    message_id: Mapped[str | None] = mapped_column(String(255))
    smtp_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    skip_reason: Mapped[str | None] = mapped_column(Text)
    content_version: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The first step, planned at the person's own confirmation: not held by the send window.
    immediate: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # The experiment arm, written when the row is first claimed and never changed after.
    experiment_key: Mapped[str | None] = mapped_column(String(100))
    variant: Mapped[str | None] = mapped_column(String(64))
    assigned_by: Mapped[str | None] = mapped_column(String(16))
    # The relay that answered last (accepted the message, or refused it), by its name.
    relay: Mapped[str | None] = mapped_column(String(32))
    # When a relay accepted the message, written while the row is still leased and before its
    # full record: a claim after a crash records such a row as sent instead of sending it again.
    accepted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Suppression(Base):
    __tablename__ = "suppression"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    address_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    reason: Mapped[str] = mapped_column(String(200))
    at: Mapped[datetime] = mapped_column(UTCDateTime)


class ContentVersion(Base):
    __tablename__ = "content_version"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    loaded_at: Mapped[datetime] = mapped_column(UTCDateTime)
    files: Mapped[list[str]] = mapped_column(JSON, default=list)
    notes: Mapped[list[str]] = mapped_column(JSON, default=list, server_default="[]")
    """What this version changed for people already in an experiment (a variant removed)."""


class ConversionEvent(Base):
    """An event a subscriber reported (a booked consult, starting on their own), with its time:
    what an experiment counts within its window after each send."""

    __tablename__ = "conversion_event"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    subscriber_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("subscriber.id", ondelete="CASCADE"), index=True
    )
    event: Mapped[str] = mapped_column(String(32))
    at: Mapped[datetime] = mapped_column(UTCDateTime)


class ExperimentHistory(Base):
    """What happened to an experiment: a winner declared (with its figures), a winner pinned in
    the file, a variant removed by an edit (its people get the step's own version)."""

    __tablename__ = "experiment_history"
    __table_args__ = (
        UniqueConstraint("experiment_key", "kind", "variant"),
        # One declared winner per experiment, whichever scheduler judges first.
        Index("uq_experiment_history_one_winner", "experiment_key", unique=True,
              sqlite_where=text(WINNER_SQL), postgresql_where=text(WINNER_SQL)),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    experiment_key: Mapped[str] = mapped_column(String(100))
    sequence_key: Mapped[str] = mapped_column(String(100))
    step_key: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(16))
    variant: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    content_version: Mapped[str] = mapped_column(String(128))
    reason: Mapped[str] = mapped_column(Text)
    figures: Mapped[dict[str, object]] = mapped_column(JSON, default=dict)


# Core tables for the bulk statements of SqlStore (executemany without ORM bookkeeping).
subscriber_table: Final = cast(Table, Subscriber.__table__)
consent_event_table: Final = cast(Table, ConsentEvent.__table__)
enrollment_table: Final = cast(Table, Enrollment.__table__)
delivery_table: Final = cast(Table, Delivery.__table__)
suppression_table: Final = cast(Table, Suppression.__table__)
content_version_table: Final = cast(Table, ContentVersion.__table__)
conversion_event_table: Final = cast(Table, ConversionEvent.__table__)
experiment_history_table: Final = cast(Table, ExperimentHistory.__table__)


class SchedulerHeartbeat(Base):
    """One row per scheduler process: what `nurture status` shows operators."""

    __tablename__ = "scheduler_heartbeat"

    owner: Mapped[str] = mapped_column(String(200), primary_key=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_tick_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ticks: Mapped[int] = mapped_column(Integer, default=0)
    sent: Mapped[int] = mapped_column(Integer, default=0)
    content_version: Mapped[str | None] = mapped_column(String(128))
    stopped_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    sending_state: Mapped[str | None] = mapped_column(Text)
    """JSON: this process's relays (breaker state) and destination pacing, as of its last tick."""


scheduler_heartbeat_table: Final = cast(Table, SchedulerHeartbeat.__table__)


class ClickCount(Base):
    """Clicks on one delivery's counted links (NURTURE_CLICK_COUNTING): how many, the first and
    the last. Nothing about who clicked, from where, or on which link."""

    __tablename__ = "click_count"

    delivery_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("delivery.id", ondelete="CASCADE"), primary_key=True)
    clicks: Mapped[int] = mapped_column(Integer, default=0)
    first_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


click_count_table: Final = cast(Table, ClickCount.__table__)


class SendBudget(Base):
    """One token bucket of the deployment's sending limits (per second, minute, hour; the whole
    deployment's, a relay's or a destination's): the tokens left when it was last taken from,
    and when (seconds of the wall clock). A daily cap's row: the day's sends, and the day."""

    __tablename__ = "send_budget"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    tokens: Mapped[float] = mapped_column(Float)
    updated: Mapped[float] = mapped_column(Float)


send_budget_table: Final = cast(Table, SendBudget.__table__)



class ContentBlob(Base):
    """One content file's text, by its SHA-256: versions that share a file store it once."""

    __tablename__ = "content_blob"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    text: Mapped[str] = mapped_column(Text)


class ContentSnapshot(Base):
    """One saved version of the content (NURTURE_CONTENT_SOURCE=database), numbered from 1: the
    newest is live. Who saved it, when, why, and the version it was edited from."""

    __tablename__ = "content_snapshot"

    number: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    saved_at: Mapped[datetime] = mapped_column(UTCDateTime)
    author: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(16))
    note: Mapped[str] = mapped_column(Text, default="")
    based_on: Mapped[int | None] = mapped_column(Integer)


class ContentSnapshotFile(Base):
    """A file of a saved version: its path under the content root and its blob."""

    __tablename__ = "content_snapshot_file"

    number: Mapped[int] = mapped_column(
        Integer, ForeignKey("content_snapshot.number", ondelete="CASCADE"), primary_key=True)
    path: Mapped[str] = mapped_column(String(300), primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), ForeignKey("content_blob.sha256"))


class AdminAudit(Base):
    """What was done in the admin pages that changes something: saves, restores, imports."""

    __tablename__ = "admin_audit"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    user: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(32))
    number: Mapped[int | None] = mapped_column(Integer)
    detail: Mapped[str] = mapped_column(Text, default="")


content_blob_table: Final = cast(Table, ContentBlob.__table__)
content_snapshot_table: Final = cast(Table, ContentSnapshot.__table__)
content_snapshot_file_table: Final = cast(Table, ContentSnapshotFile.__table__)
admin_audit_table: Final = cast(Table, AdminAudit.__table__)
