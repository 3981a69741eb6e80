"""Group commit: one bad turn in a batch fails alone; the same id twice in a batch is stored once; the
lookup a turn starts with answers stored replies and handoff states for a batch at once."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from sqlalchemy import event, update
from sqlalchemy.exc import DBAPIError

from beacon.api import store
from beacon.api.db import make_engine
from beacon.api.handoff import WAITING
from beacon.api.models import User
from beacon.api.store import HotPath, TurnRecord
from beacon.api.writer import Lookup, ProcessedLookup, Seen, TurnWriter
from beacon.messages import utcnow
from tests.api.conftest import inbound
from tests.conftest import make_settings


def _record(text: str, **update: str) -> TurnRecord:
    msg = inbound(text).model_copy(update=update)
    replies = [msg.reply_text(f"You said: {text}")]
    return TurnRecord(msg, replies, store.dump_messages(replies))


async def test_a_bad_turn_fails_alone_and_duplicates_in_a_batch_are_stored_once(migrated_url: str) -> None:
    engine = make_engine(make_settings(), migrated_url)
    hot = HotPath(engine.dialect.name)
    writer = TurnWriter(engine, hot, asyncio.Lock() if engine.dialect.name == "sqlite" else contextlib.nullcontext())
    lookup = ProcessedLookup(engine, hot)
    writer.start()
    lookup.start()
    try:
        good = [_record(f"good {i}") for i in range(5)]
        twice = _record("twice")
        bad = _record("bad", user_key="k" * 300)  # longer than users.user_key stores (PostgreSQL refuses)
        now = utcnow()
        results = await asyncio.gather(
            *(writer.write(r, now) for r in [*good, twice, twice, bad]), return_exceptions=True
        )
        assert results[:5] == [None] * 5
        assert sorted([results[5], results[6]], key=lambda r: r is not None) == [None, twice.replies_json]
        if engine.dialect.name == "postgresql":
            assert isinstance(results[7], DBAPIError)
        for record in good:
            seen = await lookup.submit(Lookup(record.inbound.id, record.inbound.user_key))
            assert seen == Seen(record.replies_json, None)
    finally:
        await writer.close()
        await lookup.close()
        await engine.dispose()


async def test_the_lookup_answers_each_message_and_its_users_handoff_in_one_batch(migrated_url: str) -> None:
    engine = make_engine(make_settings(), migrated_url)
    hot = HotPath(engine.dialect.name)
    writer = TurnWriter(engine, hot, asyncio.Lock() if engine.dialect.name == "sqlite" else contextlib.nullcontext())
    lookup = ProcessedLookup(engine, hot)
    writer.start()
    lookup.start()
    try:
        handed, bot = _record("handed off"), _record("bot")
        now = utcnow()
        assert list(await asyncio.gather(writer.write(handed, now), writer.write(bot, now))) == [None, None]
        async with engine.begin() as conn:
            await conn.execute(update(User).where(User.user_key == handed.inbound.user_key).values(handoff=WAITING))
        new = inbound("never seen")
        statements: list[str] = []
        event.listen(engine.sync_engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
        seen = await asyncio.gather(*(lookup.submit(Lookup(m.id, m.user_key))
                                      for m in (handed.inbound, bot.inbound, new)))
        assert seen == [Seen(handed.replies_json, WAITING), Seen(bot.replies_json, None), Seen(None, None)]
        assert len(statements) == 1, statements  # both reads, for the whole batch, in one statement
    finally:
        await writer.close()
        await lookup.close()
        await engine.dispose()


def test_connections_are_pinged_only_on_postgresql_and_only_when_asked(tmp_path: Path) -> None:
    """A SQLite connection is a local file: a ping per checkout (a trip to aiosqlite's thread) buys nothing. A
    PostgreSQL ping costs three round trips per checkout: a dead connection is handled when it is used instead."""
    postgres = "postgresql+asyncpg://beacon@127.0.0.1:1/beacon"
    assert not make_engine(make_settings(), postgres).pool._pre_ping
    settings = make_settings(db_pool_pre_ping=True)
    assert not make_engine(settings, f"sqlite+aiosqlite:///{tmp_path / 'ping.db'}").pool._pre_ping
    assert make_engine(settings, postgres).pool._pre_ping
