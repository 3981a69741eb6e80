"""State and outbox through the real API over real HTTP, on SQLite and PostgreSQL: a turn's state
change, replies and outbox events commit together, a message processed twice (one after the other
or at the same time) changes nothing the second time, and each event reaches the receiver once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from sqlalchemy import func, select

from beacon.api.db import make_engine
from beacon.api.models import OutboxEvent, UserState
from beacon.ops.process import free_port
from beacon.trace import TRACEPARENT, parse_traceparent, trace_id_of
from tests.api.conftest import ApiServer, inbound, process
from tests.conftest import make_settings

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Receiver:
    """An HTTP receiver of outbox events that refuses each event's first delivery (so every event
    is retried once) and counts the ones it accepts, by event id."""

    url: str = ""
    refused: set[str] = field(default_factory=set)
    accepted: list[dict[str, Any]] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    traces: dict[str, str | None] = field(default_factory=dict)

    async def receive(self, request: web.Request) -> web.Response:
        event = await request.json()
        if event["id"] not in self.refused:
            self.refused.add(event["id"])
            return web.Response(status=503, text="busy, try later")
        self.accepted.append(event)
        self.keys.append(request.headers["Idempotency-Key"])
        self.traces[event["id"]] = request.headers.get(TRACEPARENT)
        return web.Response(status=204)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    got = Receiver()
    app = web.Application()
    app.router.add_post("/events", got.receive)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    got.url = f"http://127.0.0.1:{port}/events"
    yield got
    await runner.cleanup()


async def _stored(url: str) -> tuple[int, int, dict[str, Any]]:
    """(events, events done, the state JSON of every user) in the database."""
    engine = make_engine(make_settings(), url)
    try:
        async with engine.connect() as conn:
            total = await conn.scalar(select(func.count()).select_from(OutboxEvent))
            done = await conn.scalar(
                select(func.count()).select_from(OutboxEvent).where(OutboxEvent.done_at.is_not(None))
            )
            states = {row.user_key: orjson.loads(row.data) for row in await conn.execute(select(UserState))}
    finally:
        await engine.dispose()
    return total or 0, done or 0, states


async def _all_delivered(url: str, at_least: int) -> bool:
    total, done, _ = await _stored(url)
    return done == total >= at_least


async def test_replays_and_concurrent_duplicates_apply_state_and_side_effects_once(
    database_url: str, api_factory: Callable[..., ApiServer], receiver: Receiver
) -> None:
    api = api_factory(
        database_url,
        BEACON_DB_AUTO_MIGRATE="true",
        BEACON_API_PIPELINE="commands,tests.bot.counting:bot,fallback",
        BEACON_OUTBOX_URL=receiver.url,
        BEACON_OUTBOX_RETRY_BASE_DELAY="0.05",
        BEACON_OUTBOX_RETRY_MAX_DELAY="0.2",
        PYTHONPATH=str(REPO),
    )
    user = inbound().user_id
    messages = [inbound("count", user=user) for _ in range(8)]
    async with api.client() as client:
        for n, msg in enumerate(messages, 1):
            if n % 2:  # the same message twice at the same time (a worker retrying while the first still runs)
                first, second = await asyncio.gather(process(client, msg), process(client, msg))
            else:  # twice in a row (a replay after a crash)
                first, second = await process(client, msg), await process(client, msg)
            assert first.status_code == second.status_code == 200, first.text + second.text
            assert first.json()["replies"] == second.json()["replies"]
            texts = [r["text"] for r in first.json()["replies"]]
            assert texts == [f"counted {n}", "again?"]
        # A replay long after: the stored answer, no handler run (the count would say 9).
        again = await process(client, messages[2])
        assert again.json()["duplicate"] is True and again.json()["replies"][0]["text"] == "counted 3"

    deadline = asyncio.get_running_loop().time() + 30
    while not await _all_delivered(database_url, at_least=8):
        assert asyncio.get_running_loop().time() < deadline, f"outbox not delivered in 30 s:\n{api.log()[-3000:]}"
        await asyncio.sleep(0.1)
    total, done, states = await _stored(database_url)
    mine = [e for e in receiver.accepted if e["user_key"] == messages[0].user_key]
    assert done == total >= 8
    assert sorted(e["data"]["n"] for e in mine) == list(range(1, 9))  # each effect once, none lost
    assert len({e["id"] for e in mine}) == 8 and all(e["attempt"] == 2 for e in mine)  # refused once, then done
    assert sorted(receiver.keys) == sorted(e["id"] for e in receiver.accepted)
    assert len({e["data"]["idempotency_key"] for e in mine}) == 8
    assert states[messages[0].user_key] == {"n": 8}
    # Each delivery carries the trace of the message whose turn recorded it.
    by_id = {m.id: m for m in messages}
    for event in mine:
        sent = parse_traceparent(receiver.traces[event["id"]])
        assert sent is not None and sent[0] == trace_id_of(by_id[event["message_id"]].trace_id), event
    assert "outbox delivery to" in api.log() and "failing" in api.log()
