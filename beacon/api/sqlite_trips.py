"""aiosqlite connections that run a statement in one trip to their thread. aiosqlite takes four for each
statement SQLAlchemy executes (create the cursor, execute, fetch the rows, close the cursor), and every
trip costs CPU on both threads (a queue put, a wake-up of the event loop, GIL hand-offs): at light load,
where each message is its own batch, those trips were most of the API's CPU per message on SQLite.
Here the cursor is created, executed, read and closed in one function on the connection's thread; the
rows wait on the proxy cursor. Installed through SQLAlchemy's ``async_creator_fn`` connect argument."""

from __future__ import annotations

import sqlite3
from collections.abc import Generator, Iterable
from pathlib import Path
from typing import Any

import aiosqlite

#: What one trip brings back: the cursor's description, rowcount, lastrowid and rows.
Outcome = tuple[Any, int, int | None, list[Any]]


def _run(conn: sqlite3.Connection, sql: str, parameters: Any, many: bool) -> Outcome:
    cursor = conn.cursor()
    try:
        if many:
            cursor.executemany(sql, parameters)
        else:
            cursor.execute(sql, parameters)
        rows = cursor.fetchall() if cursor.description else []
        return cursor.description, cursor.rowcount, cursor.lastrowid, rows
    finally:
        cursor.close()


class OneTripCursor(aiosqlite.Cursor):
    """The proxy cursor: ``execute`` is the only trip; the rows are then read from memory."""

    def __init__(self, conn: aiosqlite.Connection) -> None:  # no sqlite3 cursor kept: one per statement
        self.iter_chunk_size = conn._iter_chunk_size
        self._conn = conn
        self._outcome: Outcome = (None, -1, None, [])
        self._rows: list[Any] = []

    async def execute(self, sql: str, parameters: Iterable[Any] | None = None) -> OneTripCursor:
        return await self._trip(sql, parameters or (), False)

    async def executemany(self, sql: str, parameters: Iterable[Iterable[Any]]) -> OneTripCursor:
        return await self._trip(sql, parameters, True)

    async def _trip(self, sql: str, parameters: Any, many: bool) -> OneTripCursor:
        self._outcome = await self._conn._execute(_run, self._conn._conn, sql, parameters, many)  # type: ignore[no-untyped-call]
        self._rows = self._outcome[3]
        return self

    async def fetchone(self) -> Any:
        return self._rows.pop(0) if self._rows else None

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        size = size or 1
        rows, self._rows = self._rows[:size], self._rows[size:]
        return rows

    async def fetchall(self) -> list[Any]:
        rows, self._rows = self._rows, []
        return rows

    async def close(self) -> None:
        self._rows = []

    @property
    def description(self) -> Any:
        return self._outcome[0]

    @property
    def rowcount(self) -> int:
        return self._outcome[1]

    @property
    def lastrowid(self) -> int | None:
        return self._outcome[2]


class _Opened:
    """What ``cursor()`` returns: awaitable and an async context manager, like aiosqlite's, without a trip."""

    def __init__(self, cursor: OneTripCursor) -> None:
        self.cursor = cursor

    def __await__(self) -> Generator[Any, None, OneTripCursor]:
        yield from []
        return self.cursor

    async def __aenter__(self) -> OneTripCursor:
        return self.cursor

    async def __aexit__(self, *exc: object) -> None:
        await self.cursor.close()


class OneTripConnection(aiosqlite.Connection):
    """An aiosqlite connection whose cursors take one trip per statement."""

    def cursor(self) -> _Opened:  # type: ignore[override]
        return _Opened(OneTripCursor(self))


def connect(database: str | bytes | Path, *, iter_chunk_size: int = 64, **kwargs: Any) -> OneTripConnection:
    """``aiosqlite.connect`` with the arguments SQLAlchemy gives it, returning a OneTripConnection."""

    def connector() -> sqlite3.Connection:
        location = database.decode() if isinstance(database, bytes) else str(database)
        connection: sqlite3.Connection = sqlite3.connect(location, **kwargs)
        return connection

    connection = OneTripConnection(connector, iter_chunk_size)
    connection._thread.daemon = True  # as SQLAlchemy sets it for the connections it opens itself
    return connection
