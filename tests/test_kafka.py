"""The Kafka wrapper against the real broker: per-key order, acknowledged produce, clear errors."""

from __future__ import annotations

import random
import time
from collections import defaultdict
from collections.abc import Callable

import pytest
from confluent_kafka import KafkaError as CKafkaError

from beacon.config import Settings
from beacon.errors import KafkaAuthenticationError, KafkaError, TopicMismatchError
from beacon.kafka import AsyncProducer, TopicSpec, ensure_topics, kafka_error, make_consumer, make_producer
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
        with pytest.raises(KafkaError, match="did not acknowledge") as caught:
            await producer.produce("bm_in", b"x", key="k")
    finally:
        producer.close(timeout=1)
    # an outage: waited out, never given up on (the code says which: a timeout, the brokers down)
    assert caught.value.retryable and not caught.value.fatal and caught.value.code is not None


async def test_a_record_the_broker_refuses_every_time_is_a_permanent_error_with_its_code(
    kafka_settings: Settings, unique: Callable[[str], str]
) -> None:
    topic = unique("small")
    ensure_topics(kafka_settings, [TopicSpec(topic, 1, 1, {"max.message.bytes": "1000"})], strict=True)
    producer = AsyncProducer(kafka_settings)
    try:
        acknowledged = await producer.produce(topic, b"fits", key="k")
        with pytest.raises(KafkaError, match=f"did not acknowledge a message for {topic}") as caught:
            await producer.produce(topic, random.randbytes(5000), key="k")  # incompressible: too large as sent
    finally:
        producer.close()
    assert acknowledged.offset() == 0
    assert caught.value.code == CKafkaError.MSG_SIZE_TOO_LARGE
    assert not caught.value.retryable  # retrying it for ever would hold back every message behind it


def test_kafka_errors_are_retryable_unless_fatal_or_refused_by_code() -> None:
    transient = kafka_error("x", CKafkaError(CKafkaError._TRANSPORT))
    refused = kafka_error("x", CKafkaError(CKafkaError.TOPIC_AUTHORIZATION_FAILED))
    fatal = kafka_error("x", CKafkaError(CKafkaError._FENCED, fatal=True))
    assert (transient.retryable, transient.code) == (True, CKafkaError._TRANSPORT)
    assert (refused.retryable, refused.code) == (False, CKafkaError.TOPIC_AUTHORIZATION_FAILED)
    assert (fatal.retryable, fatal.fatal) == (False, True)
    assert KafkaError("queue full").retryable and not KafkaAuthenticationError("refused").retryable
    assert not TopicMismatchError("differs").retryable
