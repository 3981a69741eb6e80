"""Group commit: one bad turn in a batch fails alone; the same id twice in a batch is stored once."""

from __future__ import annotations

import asyncio
import contextlib

from sqlalchemy.exc import DBAPIError

from beacon.api import store
from beacon.api.db import make_engine
from beacon.api.store import HotPath, TurnRecord
from beacon.api.writer import ProcessedLookup, TurnWriter
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
            assert await lookup.submit(record.inbound.id) == record.replies_json
    finally:
        await writer.close()
        await lookup.close()
        await engine.dispose()
