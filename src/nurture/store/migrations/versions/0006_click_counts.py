"""Click counts: one row per delivery whose counted links were followed (NURTURE_CLICK_COUNTING).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | tuple[str, ...] | None = None
depends_on: str | tuple[str, ...] | None = None


def upgrade() -> None:
    op.create_table(
        "click_count",
        sa.Column("delivery_id", sa.Uuid(), nullable=False),
        sa.Column("clicks", sa.Integer(), nullable=False),
        sa.Column("first_at", sa.DateTime(), nullable=False),
        sa.Column("last_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["delivery_id"], ["delivery.id"], ondelete="CASCADE",
                                name="fk_click_count_delivery_id_delivery"),
        sa.PrimaryKeyConstraint("delivery_id", name="pk_click_count"),
    )
    # The retention purge deletes by last_at.
    op.create_index("ix_click_count_last_at", "click_count", ["last_at"])


def downgrade() -> None:
    op.drop_index("ix_click_count_last_at", table_name="click_count")
    op.drop_table("click_count")
