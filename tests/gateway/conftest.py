"""Helpers for gateway tests: serve an aiohttp app on a free port, read a topic from the start."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiohttp import web

from beacon.config import Settings
from beacon.kafka import Message, TopicPartition, make_admin, make_consumer


@asynccontextmanager
async def serve(app: web.Application) -> AsyncIterator[str]:
    """Serve ``app`` on a free port; yield its base URL."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


def read_topic(settings: Settings, topic: str, count: int, timeout: float = 20.0) -> list[Message]:
    """At least ``count`` records of ``topic`` from the beginning (fewer if ``timeout`` passes first),
    then whatever else arrives in a short grace period."""
    parts = make_admin(settings).list_topics(topic, timeout=5).topics[topic].partitions
    consumer = make_consumer(settings, f"reader-{time.monotonic_ns()}")
    consumer.assign([TopicPartition(topic, p, 0) for p in parts])
    out: list[Message] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            for msg in consumer.consume(500, 0.2):
                if msg.error() is None:
                    out.append(msg)
            if len(out) >= count:
                deadline = min(deadline, time.monotonic() + 0.5)
    finally:
        consumer.close()
    return out


async def aread_topic(settings: Settings, topic: str, count: int, timeout: float = 20.0) -> list[Message]:
    return await asyncio.to_thread(read_topic, settings, topic, count, timeout)
