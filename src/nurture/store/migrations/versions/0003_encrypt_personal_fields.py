"""First names and answers stored encrypted: both columns become text (existing values are
encrypted by `nurture db rotate-keys`, and read as they are until then).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | tuple[str, ...] | None = None
depends_on: str | tuple[str, ...] | None = None


def upgrade() -> None:
    with op.batch_alter_table("subscriber") as batch:
        batch.alter_column("first_name", type_=sa.Text(), existing_type=sa.String(200),
                           existing_nullable=True)
        batch.alter_column("hesitations", type_=sa.Text(), existing_type=sa.JSON(),
                           existing_nullable=False, postgresql_using="hesitations::text")


def downgrade() -> None:
    with op.batch_alter_table("subscriber") as batch:
        batch.alter_column("hesitations", type_=sa.JSON(), existing_type=sa.Text(),
                           existing_nullable=False, postgresql_using="hesitations::json")
        batch.alter_column("first_name", type_=sa.String(200), existing_type=sa.Text(),
                           existing_nullable=True)
