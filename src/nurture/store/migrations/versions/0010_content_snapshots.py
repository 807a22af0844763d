"""Content kept in the database (NURTURE_CONTENT_SOURCE=database): saved versions, their files
as shared blobs, and the admin audit log.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | tuple[str, ...] | None = None
depends_on: str | tuple[str, ...] | None = None


def upgrade() -> None:
    op.create_table(
        "content_blob",
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("sha256", name=op.f("pk_content_blob")),
    )
    op.create_table(
        "content_snapshot",
        sa.Column("number", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("saved_at", sa.DateTime(), nullable=False),
        sa.Column("author", sa.String(64), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("based_on", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("number", name=op.f("pk_content_snapshot")),
    )
    op.create_table(
        "content_snapshot_file",
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("path", sa.String(300), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.ForeignKeyConstraint(["number"], ["content_snapshot.number"], ondelete="CASCADE",
                                name=op.f("fk_content_snapshot_file_number_content_snapshot")),
        sa.ForeignKeyConstraint(["sha256"], ["content_blob.sha256"],
                                name=op.f("fk_content_snapshot_file_sha256_content_blob")),
        sa.PrimaryKeyConstraint("number", "path", name=op.f("pk_content_snapshot_file")),
    )
    op.create_table(
        "admin_audit",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("user", sa.String(64), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("number", sa.Integer(), nullable=True),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_admin_audit")),
    )
    op.create_index(op.f("ix_admin_audit_at"), "admin_audit", ["at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_admin_audit_at"), table_name="admin_audit")
    op.drop_table("admin_audit")
    op.drop_table("content_snapshot_file")
    op.drop_table("content_snapshot")
    op.drop_table("content_blob")
