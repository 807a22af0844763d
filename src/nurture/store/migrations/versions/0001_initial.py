"""Initial schema: subscribers, consent, enrollments, deliveries, suppressions, content versions.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | tuple[str, ...] | None = None
depends_on: str | tuple[str, ...] | None = None

OPEN_ENROLLMENT_SQL = "status IN ('active', 'paused')"
CLAIMABLE_SQL = "status IN ('queued', 'deferred')"
LEASED_SQL = "status = 'sending'"


def upgrade() -> None:
    op.create_table(
        "subscriber",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("first_name", sa.String(200), nullable=True),
        sa.Column("locale", sa.String(35), nullable=False),
        sa.Column("time_zone", sa.String(64), nullable=False),
        sa.Column("hesitations", sa.JSON(), nullable=False),
        sa.Column("discreet", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("confirmed_at", sa.DateTime(), nullable=True),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_subscriber"),
        sa.UniqueConstraint("email", name="uq_subscriber_email"),
    )
    op.create_table(
        "consent_event",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("subscriber_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("source", sa.String(200), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("ip", sa.String(64), nullable=True),
        sa.Column("user_agent", sa.String(512), nullable=True),
        sa.Column("consent_text_sha256", sa.String(64), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_consent_event"),
        sa.ForeignKeyConstraint(
            ["subscriber_id"],
            ["subscriber.id"],
            name="fk_consent_event_subscriber_id_subscriber",
            ondelete="CASCADE",
        ),
    )
    op.create_index("ix_consent_event_subscriber_id", "consent_event", ["subscriber_id"])
    op.create_table(
        "enrollment",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("subscriber_id", sa.Uuid(), nullable=False),
        sa.Column("sequence_key", sa.String(100), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("paused_until", sa.DateTime(), nullable=True),
        sa.Column("last_step_key", sa.String(100), nullable=True),
        sa.Column("last_sent_at", sa.DateTime(), nullable=True),
        sa.Column("content_version", sa.String(128), nullable=False),
        sa.Column("enrolled_at", sa.DateTime(), nullable=False),
        sa.Column("ended_at", sa.DateTime(), nullable=True),
        sa.Column("end_reason", sa.String(200), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_enrollment"),
        sa.ForeignKeyConstraint(
            ["subscriber_id"],
            ["subscriber.id"],
            name="fk_enrollment_subscriber_id_subscriber",
            ondelete="CASCADE",
        ),
    )
    op.create_index("ix_enrollment_subscriber_id", "enrollment", ["subscriber_id"])
    op.create_index(
        "uq_enrollment_open_per_sequence",
        "enrollment",
        ["subscriber_id", "sequence_key"],
        unique=True,
        sqlite_where=sa.text(OPEN_ENROLLMENT_SQL),
        postgresql_where=sa.text(OPEN_ENROLLMENT_SQL),
    )
    op.create_table(
        "delivery",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("subscriber_id", sa.Uuid(), nullable=False),
        sa.Column("enrollment_id", sa.Uuid(), nullable=True),
        sa.Column("step_key", sa.String(100), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("due_at", sa.DateTime(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("lease_owner", sa.String(200), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(), nullable=True),
        sa.Column("message_id", sa.String(255), nullable=True),
        sa.Column("smtp_code", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("skip_reason", sa.Text(), nullable=True),
        sa.Column("content_version", sa.String(128), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("sent_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_delivery"),
        sa.ForeignKeyConstraint(
            ["subscriber_id"],
            ["subscriber.id"],
            name="fk_delivery_subscriber_id_subscriber",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["enrollment_id"],
            ["enrollment.id"],
            name="fk_delivery_enrollment_id_enrollment",
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint("enrollment_id", "step_key", name="uq_delivery_enrollment_id_step_key"),
    )
    op.create_index("ix_delivery_status_due_at", "delivery", ["status", "due_at"])
    op.create_index("ix_delivery_subscriber_id", "delivery", ["subscriber_id"])
    op.create_index(
        "ix_delivery_claimable_due_at",
        "delivery",
        ["due_at"],
        sqlite_where=sa.text(CLAIMABLE_SQL),
        postgresql_where=sa.text(CLAIMABLE_SQL),
    )
    op.create_index(
        "ix_delivery_leased_lease_expires_at",
        "delivery",
        ["lease_expires_at"],
        sqlite_where=sa.text(LEASED_SQL),
        postgresql_where=sa.text(LEASED_SQL),
    )
    op.create_table(
        "suppression",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("address_sha256", sa.String(64), nullable=False),
        sa.Column("reason", sa.String(200), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_suppression"),
        sa.UniqueConstraint("address_sha256", name="uq_suppression_address_sha256"),
    )
    op.create_table(
        "content_version",
        sa.Column("id", sa.String(128), nullable=False),
        sa.Column("loaded_at", sa.DateTime(), nullable=False),
        sa.Column("files", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_content_version"),
    )


def downgrade() -> None:
    op.drop_table("content_version")
    op.drop_table("suppression")
    op.drop_index("ix_delivery_leased_lease_expires_at", table_name="delivery")
    op.drop_index("ix_delivery_claimable_due_at", table_name="delivery")
    op.drop_index("ix_delivery_subscriber_id", table_name="delivery")
    op.drop_index("ix_delivery_status_due_at", table_name="delivery")
    op.drop_table("delivery")
    op.drop_index("uq_enrollment_open_per_sequence", table_name="enrollment")
    op.drop_index("ix_enrollment_subscriber_id", table_name="enrollment")
    op.drop_table("enrollment")
    op.drop_index("ix_consent_event_subscriber_id", table_name="consent_event")
    op.drop_table("consent_event")
    op.drop_table("subscriber")
