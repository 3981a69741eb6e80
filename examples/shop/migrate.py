"""The shop's migrations: its own Alembic environment (``migrations/``) and its own version table,
``shop_alembic_version``, so they never mix with Beacon's. Applied when the API starts the bot
(``ShopBot.start``), or by hand: ``PYTHONPATH=examples python -m shop.migrate``."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext

from beacon.api.db import make_engine
from beacon.config import Settings

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
VERSION_TABLE = "shop_alembic_version"


def _upgrade(sync_conn: Any) -> str | None:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = sync_conn
    command.upgrade(cfg, "head")
    return MigrationContext.configure(sync_conn, opts={"version_table": VERSION_TABLE}).get_current_revision()


async def upgrade(settings: Settings) -> str | None:
    """Bring the shop's tables in ``settings``' database to the latest revision; returns it."""
    engine = make_engine(settings)
    try:
        async with engine.begin() as conn:
            revision: str | None = await conn.run_sync(_upgrade)
            return revision
    finally:
        await engine.dispose()


if __name__ == "__main__":
    print(f"shop migrations at {asyncio.run(upgrade(Settings()))}")
