"""coalesced message groups

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 18:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "message_groups",
        sa.Column("message_id", sa.String(length=64), nullable=False),
        sa.Column("group_id", sa.String(length=64), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("message_id", name=op.f("pk_message_groups")),
    )
    with op.batch_alter_table("message_groups", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_message_groups_group_id"), ["group_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("message_groups", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_message_groups_group_id"))
    op.drop_table("message_groups")
