"""Database migrations, run programmatically: upgrade, downgrade, and the start-up check."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.ext.asyncio import AsyncEngine

from beacon.api.db import make_engine
from beacon.config import Settings
from beacon.errors import BeaconError

MIGRATIONS = Path(__file__).resolve().parent / "migrations"

# Alembic narrates every step at INFO; `beacon api migrate` turns its migration lines back on.
logging.getLogger("alembic").setLevel(logging.WARNING)


class SchemaBehindError(BeaconError):
    """The database's schema is not the one this code expects."""


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


async def _run(engine: AsyncEngine, fn: Any, *args: Any) -> Any:
    async with engine.begin() as conn:
        return await conn.run_sync(fn, *args)


def _upgrade(sync_conn: Any, revision: str) -> None:
    cfg = alembic_config()
    cfg.attributes["connection"] = sync_conn
    command.upgrade(cfg, revision)


def _downgrade(sync_conn: Any, revision: str) -> None:
    cfg = alembic_config()
    cfg.attributes["connection"] = sync_conn
    command.downgrade(cfg, revision)


def _current(sync_conn: Any) -> str | None:
    return MigrationContext.configure(sync_conn).get_current_revision()


async def upgrade(settings: Settings, revision: str = "head", url: str | None = None) -> str | None:
    """Apply migrations up to ``revision``; returns the database's revision afterwards."""
    engine = make_engine(settings, url)
    try:
        await _run(engine, _upgrade, revision)
        return await _run(engine, _current)  # type: ignore[no-any-return]
    finally:
        await engine.dispose()


async def downgrade(settings: Settings, revision: str, url: str | None = None) -> str | None:
    engine = make_engine(settings, url)
    try:
        await _run(engine, _downgrade, revision)
        return await _run(engine, _current)  # type: ignore[no-any-return]
    finally:
        await engine.dispose()


async def current_revision(engine: AsyncEngine) -> str | None:
    return await _run(engine, _current)  # type: ignore[no-any-return]


async def check_schema(engine: AsyncEngine) -> None:
    """Raise SchemaBehindError unless the database is at the code's head revision."""
    current = await current_revision(engine)
    head = head_revision()
    if current != head:
        raise SchemaBehindError(
            f"the database {engine.url.render_as_string(hide_password=True)} is at migration "
            f"{current or 'none (empty database)'} but this Beacon expects {head}: run `beacon api migrate` "
            "(or set BEACON_DB_AUTO_MIGRATE=true) and start the API again"
        )
