"""The database engine: SQLAlchemy 2 async, SQLite (aiosqlite) by default, PostgreSQL (asyncpg) by URL."""

from __future__ import annotations

from functools import partial
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine

from beacon.api.sqlite_trips import connect as one_trip_connect
from beacon.config import Settings


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def make_engine(settings: Settings, url: str | None = None) -> AsyncEngine:
    """An engine for the configured database; SQLite gets WAL mode, a busy timeout and, with
    ``db_sqlite_on_loop``, its statements on the event loop (``beacon.api.sqlite_trips``). Pooled
    PostgreSQL connections are pinged before use only with ``db_pool_pre_ping``; a disconnect error invalidates
    the whole pool (SQLAlchemy's default), so a restarted database is reconnected to on its own, and the
    group-commit batchers (``beacon.api.writer``) try a batch that met a dead connection once more."""
    url = url or settings.resolved_database_url
    kwargs: dict[str, Any] = {
        "pool_size": settings.database.pool_size,
        "max_overflow": settings.database.max_overflow,
        "pool_timeout": settings.database.pool_timeout,
        # A SQLite connection is a local file: nothing to ping (each ping is a statement on aiosqlite's thread).
        "pool_pre_ping": settings.database.pool_pre_ping and not is_sqlite(url),
    }
    if is_sqlite(url):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            from pathlib import Path

            Path(path).parent.mkdir(parents=True, exist_ok=True)
        kwargs["connect_args"] = {
            "timeout": settings.database.sqlite_busy_timeout,
            # a statement is one call, on the loop (or, waiting for a lock, on aiosqlite's thread), not four trips
            "async_creator_fn": partial(one_trip_connect, on_loop=settings.database.sqlite_on_loop),
        }
    else:
        kwargs["pool_recycle"] = 1800
    engine = create_async_engine(url, **kwargs)
    if is_sqlite(url):
        event.listen(engine.sync_engine, "connect", lambda conn, _record: _sqlite_pragmas(conn))
    return engine


def _sqlite_pragmas(dbapi_conn: Any) -> None:
    """The busy timeout is the connection's ``timeout`` (``sqlite_trips.connect`` applies it)."""
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[Any]:
    return async_sessionmaker(engine, expire_on_commit=False)
