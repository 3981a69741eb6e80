"""Helpers for gateway tests: serve an aiohttp app on a free port, read a topic, wait for commits.

A test that proves something did not happen first waits for the work to be finished (the gateway's
group committed every record of bm_out, or a webhook's 200 after the broker acknowledged it), then
reads each topic exactly up to its end: no grace period, nothing left to "arrive later".
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiohttp import web

from beacon.config import Settings
from beacon.kafka import Message, TopicPartition, committed_offsets, list_topic_offsets, make_consumer, topic_partitions


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


def end_offsets(settings: Settings, topic: str) -> dict[int, int]:
    """The next offset of every partition of ``topic`` (its record count, for a topic never truncated)."""
    return list_topic_offsets(settings, topic, topic_partitions(settings, topic), "latest")


def read_topic(settings: Settings, topic: str, count: int, timeout: float = 20.0) -> list[Message]:
    """Every record of ``topic`` up to its end, once it holds at least ``count`` (or when ``timeout`` passes).

    Call it once the writers are done: what it returns is then all there is, with no grace period.
    """
    deadline = time.monotonic() + timeout
    ends = end_offsets(settings, topic)
    while sum(ends.values()) < count and time.monotonic() < deadline:
        time.sleep(0.05)
        ends = end_offsets(settings, topic)
    todo = {p: end for p, end in ends.items() if end > 0}
    out: list[Message] = []
    if not todo:
        return out
    consumer = make_consumer(settings, f"reader-{time.monotonic_ns()}")
    consumer.assign([TopicPartition(topic, p, 0) for p in todo])
    try:
        while todo and time.monotonic() < deadline + 10:
            for msg in consumer.consume(500, 0.2):
                partition, offset = msg.partition(), msg.offset()
                if msg.error() is not None or partition is None or offset is None or partition not in todo:
                    continue
                if offset < todo[partition]:
                    out.append(msg)
                if offset + 1 >= todo[partition]:
                    del todo[partition]
    finally:
        consumer.close()
    assert not todo, f"{topic}: partitions {sorted(todo)} could not be read to their end"
    return out


async def aread_topic(settings: Settings, topic: str, count: int, timeout: float = 20.0) -> list[Message]:
    return await asyncio.to_thread(read_topic, settings, topic, count, timeout)


def wait_committed(settings: Settings, group: str, topic: str, timeout: float = 30.0) -> None:
    """Wait until ``group`` committed every record of ``topic`` so far: each one is settled."""
    deadline = time.monotonic() + timeout
    while True:
        ends = end_offsets(settings, topic)
        committed = committed_offsets(settings, group, topic)
        behind = {p: (committed.get((topic, p)), end) for p, end in ends.items()
                  if end > 0 and committed.get((topic, p)) != end}
        if not behind:
            return
        assert time.monotonic() < deadline, f"group {group} did not commit {topic} to its end: {behind}"
        time.sleep(0.1)


async def await_committed(settings: Settings, group: str, topic: str, timeout: float = 30.0) -> None:
    await asyncio.to_thread(wait_committed, settings, group, topic, timeout)
