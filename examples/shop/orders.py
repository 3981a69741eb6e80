"""The shop's own table, ``shop_orders`` (beside Beacon's tables, in Beacon's database, migrated
apart from them: see ``migrate.py``), and the queries the bot makes of it."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Column, Integer, MetaData, String, Table, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

metadata = MetaData()

shop_orders = Table(
    "shop_orders",
    metadata,
    Column("number", String(16), primary_key=True),
    Column("customer", String(64), nullable=False, index=True, doc="The user id (phone number) who ordered."),
    Column("item", String(128), nullable=False),
    Column("status", String(32), nullable=False, doc="placed, shipped or delivered"),
    Column("total_cents", Integer, nullable=False),
)

#: Orders the first migration puts in, so the example answers something out of the box.
DEMO_ORDERS = [
    {"number": "1001", "customer": "447700900123", "item": "Blue kettle", "status": "delivered", "total_cents": 3499},
    {"number": "1002", "customer": "447700900123", "item": "Tea towels (3)", "status": "shipped", "total_cents": 1250},
    {"number": "1003", "customer": "447700900456", "item": "Teapot", "status": "placed", "total_cents": 2900},
]


@dataclass(frozen=True)
class Order:
    number: str
    customer: str
    item: str
    status: str
    total_cents: int

    def describe(self) -> str:
        """``Order 1001: Blue kettle, delivered, £34.99``."""
        return f"Order {self.number}: {self.item}, {self.status}, £{self.total_cents / 100:.2f}"


async def find_order(sessions: async_sessionmaker[AsyncSession], number: str, customer: str) -> Order | None:
    """Order ``number`` if it is ``customer``'s (a user never sees another's orders)."""
    async with sessions() as session:
        row = (
            await session.execute(
                select(shop_orders).where(shop_orders.c.number == number.strip().lstrip("#"),
                                          shop_orders.c.customer == customer)
            )
        ).one_or_none()
    return Order(**row._asdict()) if row is not None else None


async def orders_of(sessions: async_sessionmaker[AsyncSession], customer: str) -> list[Order]:
    """All of ``customer``'s orders, by number."""
    async with sessions() as session:
        rows = await session.execute(
            select(shop_orders).where(shop_orders.c.customer == customer).order_by(shop_orders.c.number)
        )
    return [Order(**row._asdict()) for row in rows]
