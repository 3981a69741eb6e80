"""An outbox receiver for tests run in the API's process: appends each event to the file named by
``BOT_TEST_OUTBOX_LOG`` (one JSON line per delivery), so a test counts deliveries per event id."""

from __future__ import annotations

import os

import orjson

from beacon.bot import OutboxItem


async def record(item: OutboxItem) -> None:
    with open(os.environ["BOT_TEST_OUTBOX_LOG"], "ab") as log:
        log.write(orjson.dumps(item.as_json()) + b"\n")
