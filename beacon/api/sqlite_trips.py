"""aiosqlite connections whose statements run on the event loop itself, and go to aiosqlite's thread only
when they must wait for a lock.

aiosqlite runs every call in its connection's thread, and each trip there costs CPU on both threads (a
queue put, a wake-up of the thread, a wake-up of the event loop, GIL hand-offs) and, on a busy machine,
a wait for a core: at light load those trips were most of the API's CPU per message and most of its
database time, though the statements themselves take microseconds. So here:

- A statement is created, executed, read and closed in one function (``_run``); the rows wait on the
  proxy cursor (aiosqlite alone takes four trips: cursor, execute, fetchall, close).
- With ``on_loop`` (``BEACON_DB_SQLITE_ON_LOOP``), that function and ``rollback`` run on the event loop,
  with SQLite's busy handler off (``timeout=0``): the loop never sleeps on a lock. The commit that ends a
  write transaction stays on the thread (it may checkpoint the WAL: page copies and an fsync). A call that
  finds the database locked (SQLITE_BUSY, before it changed anything) is run again on the connection's
  thread with the busy timeout (``BEACON_DB_SQLITE_BUSY_TIMEOUT``), as every call was before. This matters
  within one process too: another pooled connection may hold the write lock while its coroutine awaits,
  and a wait on the loop would keep that coroutine from ever committing.
- While a call of a connection is queued or running on its thread, that connection's next calls queue
  behind it there (the sqlite3 connection is never used by both threads at once, and calls keep their
  order even after a cancelled await).

Installed through SQLAlchemy's ``async_creator_fn`` connect argument (``beacon.api.db``)."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Generator, Iterable
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from beacon.api.metrics import SQLITE_LOCK_WAITS, SQLITE_LOOP_CALLS, SQLITE_THREAD_CALLS

#: What one statement brings back: the cursor's description, rowcount, lastrowid and rows.
Outcome = tuple[Any, int, int | None, list[Any]]

T = TypeVar("T")


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


def _commit(conn: sqlite3.Connection) -> None:
    conn.commit()


def _rollback(conn: sqlite3.Connection) -> None:
    conn.rollback()


def _waiting(busy_ms: int, fn: Callable[..., T], conn: sqlite3.Connection, *args: Any) -> T:
    """``fn`` on the connection's thread, waiting up to ``busy_ms`` for a lock (the loop's calls never wait)."""
    conn.execute(f"PRAGMA busy_timeout={busy_ms}")
    try:
        return fn(conn, *args)
    finally:
        conn.execute("PRAGMA busy_timeout=0")


def _locked(exc: sqlite3.OperationalError) -> bool:
    """SQLITE_BUSY ("database is locked"): another connection holds the lock this call needs."""
    return getattr(exc, "sqlite_errorcode", 0) & 0xFF == sqlite3.SQLITE_BUSY


class _Trip:
    """A call queued to the connection's thread, which marks it finished there (not when an await of it
    is cancelled)."""

    __slots__ = ("call", "finished")

    def __init__(self, call: Callable[[], Any]) -> None:
        self.call = call
        self.finished = False

    def __call__(self) -> Any:
        try:
            return self.call()
        finally:
            self.finished = True


class OneTripConnection(aiosqlite.Connection):
    """An aiosqlite connection whose statements take one call each, on the event loop when ``busy_ms`` is
    given (the busy timeout for the calls that must wait, on the thread), else on the thread."""

    def __init__(self, connector: Callable[[], sqlite3.Connection], iter_chunk_size: int, busy_ms: int | None) -> None:
        super().__init__(connector, iter_chunk_size)
        self.busy_ms = busy_ms
        self._last_trip: _Trip | None = None

    async def _execute(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        trip = _Trip(partial(fn, *args, **kwargs))
        self._last_trip = trip
        SQLITE_THREAD_CALLS.inc()
        return await super()._execute(trip)  # type: ignore[no-untyped-call]

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(sqlite3_connection, *args)``: on the loop unless it must wait for a lock or for this
        connection's thread, else on the thread."""
        conn = self._conn
        busy_ms = self.busy_ms
        if busy_ms is None or (self._last_trip is not None and not self._last_trip.finished):
            result: T = await self._execute(fn, conn, *args)
            return result
        changes = conn.total_changes
        started = time.perf_counter()
        try:
            return fn(conn, *args)
        except sqlite3.OperationalError as exc:
            if not _locked(exc) or conn.total_changes != changes:
                raise  # not a lock, or it already changed rows: running it again could repeat them
        finally:
            SQLITE_LOOP_CALLS.observe(time.perf_counter() - started)
        SQLITE_LOCK_WAITS.inc()
        waited: T = await self._execute(_waiting, busy_ms, fn, conn, *args)
        return waited

    def cursor(self) -> _Opened:  # type: ignore[override]
        return _Opened(OneTripCursor(self))

    async def commit(self) -> None:
        if self.busy_ms is not None and self._conn.in_transaction:
            # Ending a write transaction may checkpoint the WAL (copy its pages into the database file and
            # fsync): 35-90 ms at capacity on a 2-core machine, 4-8 ms of it CPU. The loop must not wait for it.
            await self._execute(_waiting, self.busy_ms, _commit, self._conn)
        else:
            await self.call(_commit)  # nothing to end (pysqlite begins a transaction only for a write)

    async def rollback(self) -> None:
        await self.call(_rollback)


class OneTripCursor(aiosqlite.Cursor):
    """The proxy cursor: ``execute`` is the only call; the rows are then read from memory."""

    def __init__(self, conn: OneTripConnection) -> None:  # no sqlite3 cursor kept: one per statement
        self.iter_chunk_size = conn._iter_chunk_size
        self._conn = conn
        self._outcome: Outcome = (None, -1, None, [])
        self._rows: list[Any] = []

    async def execute(self, sql: str, parameters: Iterable[Any] | None = None) -> OneTripCursor:
        return await self._statement(sql, parameters or (), False)

    async def executemany(self, sql: str, parameters: Iterable[Iterable[Any]]) -> OneTripCursor:
        # A list, not an iterator: a statement that finds the database locked on the loop runs again on the thread.
        return await self._statement(sql, parameters if isinstance(parameters, list) else list(parameters), True)

    async def _statement(self, sql: str, parameters: Any, many: bool) -> OneTripCursor:
        connection: OneTripConnection = self._conn  # type: ignore[assignment]
        self._outcome = await connection.call(_run, sql, parameters, many)
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


def connect(
    database: str | bytes | Path, *, iter_chunk_size: int = 64, on_loop: bool = False, timeout: float = 5.0,
    **kwargs: Any,
) -> OneTripConnection:
    """``aiosqlite.connect`` with the arguments SQLAlchemy gives it, returning a OneTripConnection; with
    ``on_loop`` its statements run on the event loop unless they must wait for a lock (``timeout`` seconds
    then, on its thread)."""

    def connector() -> sqlite3.Connection:
        location = database.decode() if isinstance(database, bytes) else str(database)
        if on_loop:  # used by the loop's thread and its own, never both at once; the loop never waits
            kwargs["check_same_thread"] = False
        connection: sqlite3.Connection = sqlite3.connect(location, timeout=0 if on_loop else timeout, **kwargs)
        return connection

    connection = OneTripConnection(connector, iter_chunk_size, int(timeout * 1000) if on_loop else None)
    connection._thread.daemon = True  # as SQLAlchemy sets it for the connections it opens itself
    return connection
