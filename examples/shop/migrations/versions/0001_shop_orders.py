"""The shop's orders table, with a few demo orders.

Revision ID: shop_0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "shop_0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    orders = op.create_table(
        "shop_orders",
        sa.Column("number", sa.String(16), primary_key=True),
        sa.Column("customer", sa.String(64), nullable=False, index=True),
        sa.Column("item", sa.String(128), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("total_cents", sa.Integer, nullable=False),
    )
    from shop.orders import DEMO_ORDERS

    op.bulk_insert(orders, DEMO_ORDERS)


def downgrade() -> None:
    op.drop_table("shop_orders")
