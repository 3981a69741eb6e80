"""human handoff

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 15:50:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("handoff", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("handoff_by", sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column("handoff_reason", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("handoff_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("handoff_at")
        batch_op.drop_column("handoff_reason")
        batch_op.drop_column("handoff_by")
        batch_op.drop_column("handoff")
