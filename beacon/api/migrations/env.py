"""Alembic environment: runs on the connection ``beacon.api.migrate`` hands over (never from alembic.ini)."""

from __future__ import annotations

from alembic import context

from beacon.api.models import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations with `beacon api migrate` (beacon.api.migrate), not the alembic command")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
