"""Experiments: the arm recorded on each delivery, the events an experiment counts, the history of
its decisions, and notes on content versions (a variant removed).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | tuple[str, ...] | None = None
depends_on: str | tuple[str, ...] | None = None

_ASSIGNED = sa.text("variant IS NOT NULL")
_EXPERIMENT = sa.text("experiment_key IS NOT NULL")
_WINNER = sa.text("kind = 'winner'")


def upgrade() -> None:
    # Nullable columns without a default: a metadata-only change on both databases.
    op.add_column("delivery", sa.Column("experiment_key", sa.String(100), nullable=True))
    op.add_column("delivery", sa.Column("variant", sa.String(64), nullable=True))
    op.add_column("delivery", sa.Column("assigned_by", sa.String(16), nullable=True))
    op.create_index("ix_delivery_assigned_subscriber_id", "delivery", ["subscriber_id"],
                    sqlite_where=_ASSIGNED, postgresql_where=_ASSIGNED)
    op.create_index("ix_delivery_experiment_key", "delivery", ["experiment_key"],
                    sqlite_where=_EXPERIMENT, postgresql_where=_EXPERIMENT)
    op.add_column("content_version", sa.Column("notes", sa.JSON(), nullable=False,
                                               server_default="[]"))
    op.create_table(
        "conversion_event",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("subscriber_id", sa.Uuid(), nullable=False),
        sa.Column("event", sa.String(32), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["subscriber_id"], ["subscriber.id"], ondelete="CASCADE",
                                name="fk_conversion_event_subscriber_id_subscriber"),
        sa.PrimaryKeyConstraint("id", name="pk_conversion_event"),
    )
    op.create_index("ix_conversion_event_subscriber_id", "conversion_event", ["subscriber_id"])
    op.create_table(
        "experiment_history",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("experiment_key", sa.String(100), nullable=False),
        sa.Column("sequence_key", sa.String(100), nullable=False),
        sa.Column("step_key", sa.String(100), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("variant", sa.String(64), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("content_version", sa.String(128), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("figures", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_experiment_history"),
        sa.UniqueConstraint("experiment_key", "kind", "variant",
                            name="uq_experiment_history_experiment_key_kind_variant"),
    )
    op.create_index("uq_experiment_history_one_winner", "experiment_history", ["experiment_key"],
                    unique=True, sqlite_where=_WINNER, postgresql_where=_WINNER)


def downgrade() -> None:
    op.drop_table("experiment_history")
    op.drop_table("conversion_event")
    with op.batch_alter_table("content_version") as batch:
        batch.drop_column("notes")
    op.drop_index("ix_delivery_experiment_key", table_name="delivery")
    op.drop_index("ix_delivery_assigned_subscriber_id", table_name="delivery")
    with op.batch_alter_table("delivery") as batch:
        batch.drop_column("assigned_by")
        batch.drop_column("variant")
        batch.drop_column("experiment_key")
