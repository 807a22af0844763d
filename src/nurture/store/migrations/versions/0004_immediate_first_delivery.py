"""Deliveries remember whether they go out at once after the person's own confirmation, outside
the send window; every existing row keeps the window (false).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | tuple[str, ...] | None = None
depends_on: str | tuple[str, ...] | None = None


def upgrade() -> None:
    # A plain ADD COLUMN with a default on both databases: no table copy, existing rows get false.
    op.add_column("delivery", sa.Column("immediate", sa.Boolean(), nullable=False,
                                        server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("delivery") as batch:
        batch.drop_column("immediate")
