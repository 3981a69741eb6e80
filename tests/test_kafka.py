"""The Kafka wrapper against the real broker: per-key order, acknowledged produce, clear errors."""

from __future__ import annotations

import random
import time
from collections import defaultdict
from collections.abc import Callable

import pytest

from beacon.config import Settings
from beacon.errors import KafkaError
from beacon.kafka import AsyncProducer, make_consumer, make_producer
from tests.conftest import make_settings


def test_keyed_messages_keep_their_order_per_key(
    kafka_settings: Settings, new_topic: Callable[..., str], unique: Callable[[str], str]
) -> None:
    topic = new_topic(partitions=12)
    keys = [f"user-{i}" for i in range(100)]
    sequence = [random.choice(keys) for _ in range(10_000)]
    counters: dict[str, int] = defaultdict(int)
    producer = make_producer(kafka_settings)
    failures: list[str] = []

    def on_delivery(err: object, _msg: object) -> None:
        if err is not None:
            failures.append(str(err))

    for key in sequence:
        producer.produce(topic, value=str(counters[key]).encode(), key=key.encode(), on_delivery=on_delivery)
        counters[key] += 1
        producer.poll(0)
    assert producer.flush(30) == 0
    assert failures == []

    consumer = make_consumer(kafka_settings, unique("order"))
    consumer.subscribe([topic])
    seen: dict[str, list[int]] = defaultdict(list)
    partitions_of_key: dict[str, set[int]] = defaultdict(set)
    deadline = time.monotonic() + 60
    received = 0
    while received < len(sequence) and time.monotonic() < deadline:
        for msg in consumer.consume(1000, timeout=1.0):
            assert msg.error() is None, msg.error()
            key = (msg.key() or b"").decode()
            seen[key].append(int(msg.value() or b"-1"))
            partitions_of_key[key].add(msg.partition() or 0)
            received += 1
    consumer.close()

    assert received == len(sequence)
    for key in keys:
        assert seen[key] == list(range(counters[key])), f"{key} arrived out of order"
        assert len(partitions_of_key[key]) == 1
    assert len({p for parts in partitions_of_key.values() for p in parts}) > 1


async def test_async_producer_returns_after_the_broker_acknowledged(
    kafka_settings: Settings, new_topic: Callable[..., str]
) -> None:
    topic = new_topic(partitions=3)
    producer = AsyncProducer(kafka_settings)
    try:
        msg = await producer.produce(topic, b"hello", key="k")
    finally:
        producer.close()
    assert msg.topic() == topic
    offset = msg.offset()
    assert offset is not None and offset >= 0


async def test_async_producer_fails_clearly_when_no_broker_answers() -> None:
    settings = make_settings(kafka_bootstrap="127.0.0.1:1", kafka_request_timeout=1.5)
    producer = AsyncProducer(settings)
    try:
        with pytest.raises(KafkaError, match="did not acknowledge"):
            await producer.produce("bm_in", b"x", key="k")
    finally:
        producer.close(timeout=1)
