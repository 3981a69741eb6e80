"""Migrations up and down, and the start-up refusal when the schema is behind."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import inspect

from beacon.api import migrate
from beacon.api.db import make_engine
from tests.api.conftest import _pg_admin, pg_base_url
from tests.conftest import make_settings

TABLES = {
    "users", "conversations", "messages", "delivery_states", "processed", "user_states", "outbox", "message_groups",
}


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"
        return
    base = pg_base_url()
    name = f"beacon_mig_{uuid.uuid4().hex[:10]}"
    _pg_admin(base, f"CREATE DATABASE {name}")
    yield base.rsplit("/", 1)[0] + "/" + name
    _pg_admin(base, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


async def _tables(url: str) -> set[str]:
    engine = make_engine(make_settings(), url)
    try:
        async with engine.connect() as conn:
            return set(await conn.run_sync(lambda c: inspect(c).get_table_names())) - {"alembic_version"}
    finally:
        await engine.dispose()


async def test_migrations_go_up_and_down(empty_url: str) -> None:
    settings = make_settings()
    assert await migrate.upgrade(settings, url=empty_url) == migrate.head_revision()
    assert await _tables(empty_url) == TABLES
    assert await migrate.downgrade(settings, "base", url=empty_url) is None
    assert await _tables(empty_url) == set()
    assert await migrate.upgrade(settings, url=empty_url) == migrate.head_revision()


async def test_check_schema_names_the_fix_when_behind(empty_url: str) -> None:
    engine = make_engine(make_settings(), empty_url)
    try:
        with pytest.raises(migrate.SchemaBehindError, match="run `beacon api migrate`"):
            await migrate.check_schema(engine)
    finally:
        await engine.dispose()


def test_beacon_api_refuses_to_start_on_an_unmigrated_database(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BEACON_")}
    env.update({"BEACON_DATA_DIR": str(tmp_path), "BEACON_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/x.db"})
    done = subprocess.run(
        [sys.executable, "-m", "beacon", "api", "--port", "1"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "none (empty database)" in done.stderr and "run `beacon api migrate`" in done.stderr
    migrated = subprocess.run(
        [sys.executable, "-m", "beacon", "api", "migrate"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert migrated.returncode == 0 and f"at migration {migrate.head_revision()}" in migrated.stdout
