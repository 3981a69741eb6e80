"""The shop's Alembic environment: runs on the connection ``shop.migrate`` hands over, keeping its
revision in ``shop_alembic_version`` (Beacon's is ``alembic_version``)."""

from __future__ import annotations

from alembic import context

from shop.migrate import VERSION_TABLE
from shop.orders import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run the shop's migrations with `python -m shop.migrate`, not the alembic command")

context.configure(connection=connection, target_metadata=metadata, version_table=VERSION_TABLE)
with context.begin_transaction():
    context.run_migrations()
