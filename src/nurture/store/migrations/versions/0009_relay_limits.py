"""Per-relay limits: the token store's names grow to hold a relay's or a destination's name and
unit; each scheduler's heartbeat carries its relays' breakers and its destination pacing, for
`nurture status`.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | tuple[str, ...] | None = None
depends_on: str | tuple[str, ...] | None = None


def upgrade() -> None:
    with op.batch_alter_table("send_budget") as table:
        table.alter_column("name", existing_type=sa.String(32), type_=sa.String(100),
                           existing_nullable=False)
    with op.batch_alter_table("scheduler_heartbeat") as table:
        table.add_column(sa.Column("sending_state", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("scheduler_heartbeat") as table:
        table.drop_column("sending_state")
    with op.batch_alter_table("send_budget") as table:
        table.alter_column("name", existing_type=sa.String(100), type_=sa.String(32),
                           existing_nullable=False)
