"""SQLite statements run on the event loop, in one call each (``beacon.api.sqlite_trips``), and still
answer as the driver does: rows, RETURNING, rowcount, executemany, and errors as SQLAlchemy's. A call that
finds the database locked waits on aiosqlite's thread, never on the loop; with BEACON_DB_SQLITE_ON_LOOP
off every call takes one trip to that thread."""

from __future__ import annotations

import asyncio
import re
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiosqlite
import pytest
from prometheus_client import REGISTRY
from sqlalchemy import event, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from beacon.api import migrate, sqlite_trips
from beacon.api.db import make_engine
from tests.api.conftest import ApiServer, inbound, process
from tests.conftest import make_settings


def engine_at(path: Path, **overrides: Any) -> AsyncEngine:
    """An engine whose connections have ``thread_id()``: the ident of the thread a statement runs on."""
    engine = make_engine(make_settings(**overrides), f"sqlite+aiosqlite:///{path}")
    event.listen(
        engine.sync_engine, "connect", lambda conn, _record: conn.create_function("thread_id", 0, threading.get_ident)
    )
    return engine


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    engine = engine_at(tmp_path / "trips.db")
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT UNIQUE)"))
    yield engine
    await engine.dispose()


@pytest.fixture
def trips(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every call queued to an aiosqlite connection's thread, by name."""
    queued: list[str] = []
    original = aiosqlite.Connection._execute

    async def counted(self: aiosqlite.Connection, fn: Any, *args: Any, **kwargs: Any) -> Any:
        call = getattr(fn, "call", fn)  # sqlite_trips' _Trip wraps a partial
        queued.append(getattr(getattr(call, "func", call), "__name__", repr(call)))
        return await original(self, fn, *args, **kwargs)  # type: ignore[no-untyped-call]

    monkeypatch.setattr(aiosqlite.Connection, "_execute", counted)
    return queued


def lock_waits() -> float:
    return REGISTRY.get_sample_value("beacon_api_sqlite_lock_waits_total") or 0.0


async def test_statements_and_rollbacks_run_on_the_loop_and_only_a_writes_commit_takes_a_trip(
    engine: AsyncEngine, trips: list[str]
) -> None:
    async with engine.connect() as conn:  # a pooled connection, opened (two trips: connect's function, its thread)
        await conn.rollback()
    trips.clear()
    async with engine.begin() as conn:
        await conn.execute(text("INSERT INTO t (name) VALUES ('a')"))
        on = (await conn.execute(text("SELECT thread_id()"))).scalar_one()
    assert trips == ["_waiting"]  # the commit, which may checkpoint the WAL (an fsync), on the thread
    async with engine.connect() as conn:
        rows = (await conn.execute(text("SELECT name FROM t UNION ALL SELECT 'b'"))).all()
    assert on == threading.get_ident()
    assert rows == [("a",), ("b",)]
    # aiosqlite alone: cursor, execute, fetchall, close per statement, then commit, rollback
    assert trips == ["_waiting"]


async def test_with_the_setting_off_a_statement_is_one_trip_to_the_connection_thread(
    tmp_path: Path, trips: list[str]
) -> None:
    engine = engine_at(tmp_path / "off.db", db_sqlite_on_loop=False)
    try:
        async with engine.connect() as conn:
            trips.clear()
            on = (await conn.execute(text("SELECT thread_id()"))).scalar_one()
            assert trips == ["_run"]
    finally:
        await engine.dispose()
    assert on != threading.get_ident()


async def test_rows_returning_rowcount_executemany_and_errors_are_the_drivers(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        result = await conn.execute(text("INSERT INTO t (name) VALUES (:n)"), [{"n": "a"}, {"n": "b"}, {"n": "c"}])
        assert result.rowcount == 3
        returned = await conn.execute(text("INSERT INTO t (name) VALUES ('d') RETURNING id, name"))
        assert returned.one() == (4, "d")
        updated = await conn.execute(text("UPDATE t SET name = name || '!' WHERE id <= 2"))
        assert updated.rowcount == 2
        first = await conn.execute(text("SELECT name FROM t ORDER BY id"))
        assert first.fetchone() == ("a!",)
        assert first.fetchmany(2) == [("b!",), ("c",)]
        assert first.fetchall() == [("d",)]
    with pytest.raises(IntegrityError):
        async with engine.begin() as conn:
            await conn.execute(text("INSERT INTO t (name) VALUES ('d')"))
    async with engine.connect() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM t"))).scalar_one() == 4


async def wait_for(condition: Callable[[], bool], what: str, seconds: float = 30) -> None:
    """Until ``condition``, which must come within ``seconds`` (also when the loop was blocked meanwhile: the
    tests' busy timeout is longer)."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"not within {seconds}s: {what}"
        await asyncio.sleep(0.01)
    assert time.monotonic() < deadline, f"not within {seconds}s: {what} (the event loop was blocked)"


async def test_a_write_waits_for_another_pooled_connections_lock_off_the_loop(tmp_path: Path) -> None:
    """Connection A holds the write lock while its coroutine awaits; B's write must wait for it somewhere
    other than the loop, or A could never commit (B would fail when its busy timeout ran out)."""
    engine = engine_at(tmp_path / "pool.db", db_sqlite_busy_timeout=60)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("CREATE TABLE t (name TEXT)"))
        before = lock_waits()
        held, release = asyncio.Event(), asyncio.Event()

        async def holder() -> None:
            async with engine.begin() as conn:
                await conn.execute(text("INSERT INTO t VALUES ('a')"))  # the write lock, held until commit
                held.set()
                await release.wait()

        async def writer() -> int:
            async with engine.begin() as conn:
                await conn.execute(text("INSERT INTO t VALUES ('b')"))
                return int((await conn.execute(text("SELECT thread_id()"))).scalar_one())

        holding = asyncio.create_task(holder())
        await asyncio.wait_for(held.wait(), 30)
        writing = asyncio.create_task(writer())
        await wait_for(lambda: lock_waits() > before, "the writer waiting for the lock")
        release.set()
        await asyncio.wait_for(holding, 30)
        writer_thread = await asyncio.wait_for(writing, 30)
        async with engine.connect() as conn:
            names = (await conn.execute(text("SELECT name FROM t ORDER BY rowid"))).scalars().all()
    finally:
        await engine.dispose()
    assert names == ["a", "b"]
    assert writer_thread == threading.get_ident()  # once its wait on the thread is over, back on the loop


async def test_a_cancelled_wait_for_the_lock_keeps_the_connection_off_the_loop_until_it_ends(tmp_path: Path) -> None:
    """A statement waiting for the lock on the connection's thread goes on there when its request is
    cancelled: what SQLAlchemy then does with that connection (roll back, close) queues behind it instead
    of running on the loop beside it (which would block the loop on the connection the thread holds, so the
    holder could never commit)."""
    engine = engine_at(tmp_path / "cancel.db", db_sqlite_busy_timeout=60)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("CREATE TABLE t (name TEXT)"))
        before = lock_waits()
        held, release = asyncio.Event(), asyncio.Event()

        async def holder() -> None:
            async with engine.begin() as conn:
                await conn.execute(text("INSERT INTO t VALUES ('a')"))
                held.set()
                await release.wait()

        async def writer() -> None:
            async with engine.begin() as conn:
                await conn.execute(text("INSERT INTO t VALUES ('cancelled')"))

        holding = asyncio.create_task(holder())
        await asyncio.wait_for(held.wait(), 30)
        writing = asyncio.create_task(writer())
        await wait_for(lambda: lock_waits() > before, "the writer waiting for the lock")
        writing.cancel()
        await asyncio.sleep(0)  # the writer's clean-up runs (its insert still waits on the thread)
        release.set()
        await asyncio.wait_for(holding, 30)
        await asyncio.wait_for(asyncio.gather(writing, return_exceptions=True), 30)
        async with engine.begin() as conn:
            await conn.execute(text("INSERT INTO t VALUES ('c')"))
        async with engine.connect() as conn:
            names = (await conn.execute(text("SELECT name FROM t ORDER BY rowid"))).scalars().all()
    finally:
        await engine.dispose()
    assert names == ["a", "c"]


def thread_calls() -> float:
    return REGISTRY.get_sample_value("beacon_api_sqlite_thread_calls_total") or 0.0


async def test_a_call_after_a_cancelled_wait_queues_behind_it_on_the_thread(tmp_path: Path) -> None:
    """The driver alone: while a statement waits for the lock on the connection's thread, the connection's
    next call (here a rollback after the wait's await was cancelled) goes to the thread behind it, not on the
    loop beside it, where it would block the loop on the connection the thread holds."""
    path = tmp_path / "queue.db"
    with sqlite3.connect(path) as setup:
        setup.execute("CREATE TABLE t (name TEXT)")
    holder = sqlite3.connect(path, isolation_level=None)
    conn = sqlite_trips.connect(path, on_loop=True, timeout=60)
    await conn
    try:
        holder.execute("BEGIN IMMEDIATE")
        waits, trips = lock_waits(), thread_calls()
        waiting = asyncio.create_task(conn.cursor().cursor.execute("INSERT INTO t VALUES ('cancelled')"))
        await wait_for(lambda: lock_waits() > waits, "the insert waiting for the lock on the thread")
        waiting.cancel()
        rolling_back = asyncio.create_task(conn.rollback())
        await wait_for(lambda: thread_calls() > trips + 1, "the rollback queued to the thread")
        assert not rolling_back.done()
        holder.execute("COMMIT")
        await asyncio.wait_for(rolling_back, 30)
        assert (await asyncio.gather(waiting, return_exceptions=True))[0].__class__ is asyncio.CancelledError
        assert (await conn.cursor().cursor.execute("SELECT count(*) FROM t"))._rows == [(0,)]
    finally:
        await conn.close()
        holder.close()


async def test_a_request_waiting_for_a_lock_held_elsewhere_leaves_the_api_answering(
    tmp_path: Path, api_factory: Callable[..., ApiServer]
) -> None:
    """Another process's transaction holds the write lock: a message's request waits (the API answers
    /metrics meanwhile, its event loop free) and is stored once the lock is released."""
    path = tmp_path / "held.db"
    url = f"sqlite+aiosqlite:///{path}"
    await migrate.upgrade(make_settings(), url=url)
    api = api_factory(url, BEACON_DB_SQLITE_BUSY_TIMEOUT="60")
    holder = sqlite3.connect(path, isolation_level=None)
    try:
        async with api.client() as client:

            async def waits() -> float:
                metrics = (await client.get("/metrics")).text
                found = re.search(r"^beacon_api_sqlite_lock_waits_total (\S+)$", metrics, re.M)
                assert found, "no beacon_api_sqlite_lock_waits_total in /metrics"
                return float(found.group(1))

            assert (await process(client, inbound("warm-up"))).status_code == 200
            before = await waits()
            holder.execute("BEGIN IMMEDIATE")  # the write lock, held
            msg = inbound("while another process writes")
            request = asyncio.create_task(process(client, msg))
            deadline = time.monotonic() + 30
            while await waits() == before:
                assert time.monotonic() < deadline, "the request never waited for the lock"
                assert not request.done(), f"answered while the lock was held: {request.result().text}"
                await asyncio.sleep(0.05)
            holder.execute("COMMIT")
            resp = await asyncio.wait_for(request, 30)
            assert resp.status_code == 200 and resp.json()["duplicate"] is False, resp.text
            again = await process(client, msg)
            assert again.json()["duplicate"] is True
    finally:
        holder.close()
