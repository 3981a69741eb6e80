"""The worker's Kafka consumer runs on the app's event loop: no consumer thread, no cross-thread calls."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from faust.types import TP
from mode.threads import WorkerThread

from beacon.config import Settings
from beacon.kafka import make_producer
from beacon.streams.app import create_app
from beacon.streams.consumer import LoopConsumer
from tests.conftest import make_settings


async def test_the_consumer_runs_on_the_apps_loop_and_reaches_the_broker_without_a_thread(
    kafka_settings: Settings, new_topic: Callable[..., str], tmp_path: Path
) -> None:
    topic = new_topic(partitions=1)
    producer = make_producer(kafka_settings)
    for i in range(3):
        producer.produce(topic, f"m{i}".encode(), key=b"k")
    assert producer.flush(10) == 0
    app = create_app(make_settings(data_dir=tmp_path))
    consumer: Any = app.consumer
    assert isinstance(consumer, LoopConsumer)
    delegate: Any = consumer._thread
    await asyncio.wait_for(consumer.start(), 30)
    try:
        # aiokafka's client was created on, and runs on, this loop; Faust started no thread for it.
        assert delegate._consumer._loop is asyncio.get_running_loop()
        assert [t for t in threading.enumerate() if isinstance(t, WorkerThread)] == []
        # A call that used to cross threads (a queued method, a future resolved from the other loop) answers.
        tp = TP(topic, 0)
        assert await asyncio.wait_for(consumer.highwaters(tp), 30) == {tp: 3}
    finally:
        await asyncio.wait_for(consumer.stop(), 30)
    assert delegate._consumer._closed
