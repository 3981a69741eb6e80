"""The database behind the API failing: PostgreSQL stopped and restarted (a cluster of the test's
own), SQLite locked by another writer, the pool exhausted. Each is a 503 with Retry-After on every
route (never a 500), /readyz says not ready, and the API recovers on its own."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from beacon.api import migrate
from tests.api.conftest import ApiServer, app_in_process, as_json, inbound, process
from tests.api.own_postgres import OwnPostgres
from tests.conftest import make_settings


def assert_retry_later(resp: httpx.Response) -> None:
    assert resp.status_code == 503, resp.text
    assert int(resp.headers["retry-after"]) > 0
    assert "database unavailable" in resp.json()["detail"]


@pytest.mark.slow
async def test_postgres_stopped_is_503_and_its_return_needs_no_api_restart(
    api_factory: Callable[..., ApiServer],
) -> None:
    pg = OwnPostgres()
    try:
        pg.start()
        await migrate.upgrade(make_settings(), url=pg.url)
        server = api_factory(pg.url, BEACON_DB_POOL_SIZE="4")
        user = inbound().user_id
        async with server.client() as client:
            assert (await process(client, inbound("before", user=user))).status_code == 200

            # Restarted between two requests: the pooled connections are dead, none is handed out.
            await asyncio.to_thread(pg.stop)
            await asyncio.to_thread(pg.start)
            assert (await process(client, inbound("after a restart", user=user))).status_code == 200

            await asyncio.to_thread(pg.stop)
            down = inbound("while down", user=user)
            assert_retry_later(await process(client, down))
            assert_retry_later(await client.get(f"/v1/users/{down.user_key}"))
            assert_retry_later(await client.get(f"/v1/users/{down.user_key}/messages"))
            batch = await client.post("/v1/messages/process-batch", json={"messages": [as_json(down)]})
            assert batch.status_code == 200
            [item] = [line for line in batch.text.splitlines() if line]
            assert '"status":503' in item and "database unavailable" in item
            ready = await client.get("/readyz")
            assert ready.status_code == 503 and int(ready.headers["retry-after"]) > 0

            await asyncio.to_thread(pg.start)
            resp = await process(client, down)
            assert resp.status_code == 200, resp.text
            assert resp.json()["duplicate"] is False
            assert (await client.get("/readyz")).status_code == 200
            page = (await client.get(f"/v1/users/{down.user_key}/messages")).json()
        assert [m["message"]["text"] for m in page["messages"]][::2] == [
            "You said: while down",
            "You said: after a restart",
            "You said: before",
        ]
        log = server.log()
        assert log.count("database unavailable (") == 1, log  # once per outage, not once per request
        assert "database answers again after" in log
    finally:
        pg.close()


@pytest.mark.slow
async def test_after_a_postgres_restart_requests_succeed_on_new_connections_without_pings(
    api_factory: Callable[..., ApiServer],
) -> None:
    """Pooled connections are not pinged before use: the first request after a restart finds its connection dead,
    and is tried once more on a new one instead of failing (503) back to the worker."""
    pg = OwnPostgres()
    try:
        pg.start()
        await migrate.upgrade(make_settings(), url=pg.url)
        server = api_factory(pg.url, BEACON_DB_POOL_SIZE="4", BEACON_DB_POOL_PRE_PING="false")
        first = inbound("before")
        async with server.client() as client:
            assert (await process(client, first)).status_code == 200
            await asyncio.to_thread(pg.stop)
            await asyncio.to_thread(pg.start)
            after = await process(client, inbound("after a restart", user=first.user_id))
            assert after.status_code == 200, after.text
            assert (await process(client, first)).json()["duplicate"] is True
        assert "a pooled database connection was dead" in server.log()
        assert "database unavailable (" not in server.log()
    finally:
        pg.close()


async def test_sqlite_locked_by_another_writer_is_503_then_recovers(tmp_path: Path) -> None:
    path = tmp_path / "locked.db"
    url = f"sqlite+aiosqlite:///{path}"
    await migrate.upgrade(make_settings(), url=url)
    async with app_in_process(url, db_sqlite_busy_timeout=0.3) as (client, _state):
        msg = inbound("while locked")
        holder = sqlite3.connect(path, isolation_level=None)
        try:
            holder.execute("BEGIN IMMEDIATE")  # the write lock, held
            assert_retry_later(await process(client, msg))
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        resp = await process(client, msg)
    assert resp.status_code == 200 and resp.json()["duplicate"] is False


async def test_pool_timeout_is_503(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'pool.db'}"
    await migrate.upgrade(make_settings(), url=url)
    async with app_in_process(url, db_pool_size=1, db_max_overflow=0, db_pool_timeout=0.2) as (client, state):
        async with state.engine.connect():  # the only connection, held
            assert_retry_later(await client.get("/v1/users/whatsapp:1:someone"))
            assert (await client.get("/readyz")).status_code == 503
        assert (await client.get("/v1/users/whatsapp:1:someone")).status_code == 404
