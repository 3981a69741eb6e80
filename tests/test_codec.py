"""The BeaconMessage codec against the real registry (and broker): every kind round-trips, schemas
evolve both ways, bad bytes fail with where they came from, a registry outage is waited out."""

from __future__ import annotations

import asyncio
import json
import logging
import struct
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from beacon.codec import MessageCodec, load_schema_text, retry_registry
from beacon.config import Settings
from beacon.dlq import dead_letter, read_dlq_headers
from beacon.errors import BadMessageError, BeaconError, RegistryError, RegistryUnavailableError
from beacon.kafka import AsyncProducer, make_consumer
from beacon.messages import (
    KINDS,
    BeaconMessage,
    InteractiveReply,
    Location,
    Media,
    Reaction,
    StatusError,
)
from tests.conftest import make_settings, unavailable

BASE = BeaconMessage.inbound_text(
    channel="whatsapp", account="106540352242922", user_id="447700900123", text="hi",
    channel_message_id="wamid.HBgLNDQ3NzAwOTAwMTIzFQIAEhggQjVGM0E0", profile_name="Ada",
    channel_timestamp=datetime(2026, 11, 28, 12, 0, 1, 123000, tzinfo=UTC), metadata={"source": "test"},
)


def message_of_kind(kind: str) -> BeaconMessage:
    """A message of each kind, with the content that kind carries."""
    content: dict[str, object] = {"kind": kind, "text": None}
    if kind == "text":
        content["text"] = "héllo 👋"
    elif kind in {"image", "audio", "video", "document", "sticker"}:
        content["media"] = Media(id="1234", mime_type="image/jpeg", caption="look", filename="a.pdf", sha256="ab")
    elif kind == "location":
        content["location"] = Location(latitude=51.5, longitude=-0.12, name="Home", address="1 Street")
    elif kind == "reaction":
        content["reaction"] = Reaction(emoji="👍", target_id="wamid.X")
    elif kind in {"interactive", "button"}:
        content["interactive_reply"] = InteractiveReply(type="button_reply", id="yes", title="Yes")
    elif kind in {"contacts", "template"}:
        content["payload"] = json.dumps({"name": "hello_world", "language": {"code": "en_US"}})
    elif kind == "read_receipt":
        content.update(direction="outbound", metadata={"typing": "true"})
    elif kind == "status":
        content.update(direction="status", status="failed",
                       error=StatusError(code=131026, title="Message undeliverable", message="m", details="d"))
    elif kind == "unsupported":
        content["raw_type"] = "order"
    return BASE.model_copy(update=content)


@pytest.fixture(scope="module")
def codec(registry_settings: Settings) -> MessageCodec:
    return MessageCodec(registry_settings)


def next_schema_text() -> str:
    """The next version of the schema: one new field with a default (a compatible change)."""
    schema = json.loads(load_schema_text())
    schema["fields"].append({"name": "priority", "type": "int", "default": 5, "doc": "test field"})
    return json.dumps(schema)


def test_avro_schema_and_model_have_the_same_fields() -> None:
    schema = json.loads(load_schema_text())
    assert [f["name"] for f in schema["fields"]] == list(BeaconMessage.model_fields)
    for field in schema["fields"]:
        assert field.get("doc"), f"field {field['name']} needs a doc"


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_kind_round_trips(codec: MessageCodec, kind: str) -> None:
    msg = message_of_kind(kind)
    data = codec.encode(msg, "bm_in")
    assert data[0] == 0 and struct.unpack(">I", data[1:5])[0] == codec.schema_id("bm_in")
    assert codec.decode(data, topic="bm_in") == msg


def test_round_trip_through_the_broker(
    registry_settings: Settings, codec: MessageCodec, new_topic: Callable[..., str]
) -> None:
    topic = new_topic(partitions=3)
    messages = [message_of_kind(kind) for kind in sorted(KINDS)]

    async def produce() -> None:
        producer = AsyncProducer(registry_settings)
        try:
            await asyncio.gather(*(producer.produce(topic, codec.encode(m, topic), key=m.user_key) for m in messages))
        finally:
            producer.close()

    asyncio.run(produce())
    consumer = make_consumer(registry_settings, f"g-{topic}", **{"auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    received: list[BeaconMessage] = []
    try:
        while len(received) < len(messages):
            record = consumer.poll(10)
            assert record is not None, "timed out waiting for records"
            assert record.error() is None
            received.append(codec.decode(record.value(), topic=topic, partition=record.partition() or 0,
                                         offset=record.offset() or 0))
    finally:
        consumer.close()
    assert sorted(received, key=lambda m: m.kind) == messages


def test_old_code_reads_messages_written_by_the_next_version(registry_settings: Settings, codec: MessageCodec,
                                                             unique: Callable[[str], str]) -> None:
    topic = unique("evolve")
    current = MessageCodec(registry_settings)
    newer = MessageCodec(registry_settings, schema_text=next_schema_text())
    current.prepare([topic])  # history: the current version first
    msg = message_of_kind("text")
    data = newer.encode_record({**newer_record(msg), "priority": 9}, topic)
    assert struct.unpack(">I", data[1:5])[0] != current.schema_id(topic)
    decoded = current.decode(data, topic=topic)
    assert decoded == msg  # the unknown field is dropped by schema resolution


def test_next_version_reads_messages_written_by_current_code(registry_settings: Settings,
                                                             unique: Callable[[str], str]) -> None:
    topic = unique("evolve")
    current = MessageCodec(registry_settings)
    newer = MessageCodec(registry_settings, schema_text=next_schema_text())
    msg = message_of_kind("location")
    data = current.encode(msg, topic)
    newer.prepare([topic])
    record = newer.decode_record(data, topic=topic)
    assert record["priority"] == 5  # the new field takes its default
    assert record["location"]["latitude"] == 51.5 and record["text"] is None


def newer_record(msg: BeaconMessage) -> dict[str, object]:
    from beacon.codec import to_record

    return to_record(msg)


@pytest.mark.parametrize(
    ("mangle", "reason"),
    [
        (lambda data: b"\x01" + data[1:], "wrong magic byte 1"),
        (lambda data: b"\x00" + struct.pack(">I", 987654) + data[5:], "unknown schema id 987654"),
        (lambda data: data[: len(data) // 2], "does not decode"),
        (lambda data: data + b"\x00garbage", "trailing bytes"),
        (lambda data: data[:3], "shorter than the 5-byte header"),
        (lambda data: b"", "empty value"),
    ],
    ids=["wrong-magic", "unknown-schema-id", "truncated-body", "trailing-bytes", "short-header", "empty"],
)
def test_bad_bytes_raise_an_error_naming_topic_partition_offset(
    codec: MessageCodec, mangle: Callable[[bytes], bytes], reason: str
) -> None:
    data = mangle(codec.encode(message_of_kind("text"), "bm_in"))
    with pytest.raises(BadMessageError) as caught:
        codec.decode(data, topic="bm_in", partition=7, offset=4242)
    text = str(caught.value)
    assert reason in text and "bm_in partition 7 offset 4242" in text
    assert (caught.value.topic, caught.value.partition, caught.value.offset) == ("bm_in", 7, 4242)


def test_dead_letter_keeps_the_original_bytes_and_says_why(
    registry_settings: Settings, new_topic: Callable[..., str]
) -> None:
    dlq = new_topic(partitions=1, prefix="dlq")
    settings = registry_settings.replace(topic_dlq=dlq)
    garbage = b"\x07not avro at all"
    error = BadMessageError("wrong magic byte 7", topic="bm_in", partition=3, offset=99)

    async def send() -> None:
        producer = AsyncProducer(settings)
        try:
            await dead_letter(producer, settings, key=b"whatsapp:1:2", value=garbage, topic="bm_in", partition=3,
                              offset=99, error=error, attempts=1, origin="test")
        finally:
            producer.close()

    asyncio.run(send())
    consumer = make_consumer(settings, f"g-{dlq}", **{"auto.offset.reset": "earliest"})
    consumer.subscribe([dlq])
    try:
        record = consumer.poll(15)
        while record is not None and record.error() is not None:
            record = consumer.poll(15)
        assert record is not None
        assert record.value() == garbage and record.key() == b"whatsapp:1:2"
        info = read_dlq_headers(record.headers())
    finally:
        consumer.close()
    assert info is not None
    assert (info.topic, info.partition, info.offset, info.attempts, info.origin) == ("bm_in", 3, 99, 1, "test")
    assert info.error_class == "BadMessageError" and "wrong magic byte 7" in info.error_text
    assert info.time is not None


@pytest.fixture
def own_registry(tmp_path: Path, kafka_settings: Settings) -> Iterator[Settings]:
    """A registry of this test's own (port 18082), which the test stops and starts."""
    from beacon.ops import registry_local

    settings = make_settings(data_dir=tmp_path, schema_registry_url="http://127.0.0.1:18082/apis/ccompat/v7")
    try:
        registry_local.start(settings)
    except BeaconError as exc:
        unavailable(f"cannot start a second schema registry: {exc}")
    yield settings
    registry_local.stop(settings)


def test_registry_outage_is_retried_until_it_answers_and_ids_survive_restart(own_registry: Settings) -> None:
    from beacon.ops import registry_local

    msg = message_of_kind("text")
    data = MessageCodec(own_registry).encode(msg, "bm_in")
    registry_local.stop(own_registry)
    fresh = MessageCodec(own_registry)  # nothing cached: it must ask the registry for the writer schema
    with pytest.raises(RegistryUnavailableError, match="did not answer"):
        fresh.decode(data, topic="bm_in")

    failures = 0

    def counted_decode(value: bytes, *, topic: str) -> BeaconMessage:
        nonlocal failures
        try:
            return fresh.decode(value, topic=topic)
        except RegistryUnavailableError:
            failures += 1
            raise

    async def outage_then_recovery() -> BeaconMessage:
        waiting = asyncio.create_task(retry_registry(counted_decode, data, topic="bm_in", max_delay=1.0))
        deadline = asyncio.get_running_loop().time() + 60
        while failures < 3:  # the registry refused it three times: the call is waiting, not giving up
            assert asyncio.get_running_loop().time() < deadline, "decode was never retried"
            await asyncio.sleep(0.05)
        assert not waiting.done(), "decode must wait for the registry, not fail or dead-letter"
        await asyncio.to_thread(registry_local.start, own_registry)
        return await asyncio.wait_for(waiting, 60)

    assert asyncio.run(outage_then_recovery()) == msg


def test_a_registry_outage_is_logged_once_when_it_starts_and_once_when_it_ends(
    caplog: pytest.LogCaptureFixture,
) -> None:
    down, attempts = True, 0

    def lookup(n: int) -> int:
        nonlocal attempts
        attempts += 1
        if down:
            raise RegistryUnavailableError("the schema registry at http://127.0.0.1:9 did not answer")
        return n

    async def fifty_calls_through_an_outage() -> list[int]:
        nonlocal down
        calls = [asyncio.create_task(retry_registry(lookup, n, max_delay=0.05)) for n in range(50)]
        while attempts < 200:  # every call failed, most of them several times: none of those may log again
            await asyncio.sleep(0.01)
        down = False
        return await asyncio.wait_for(asyncio.gather(*calls), 30)

    with caplog.at_level(logging.INFO, logger="beacon.codec"):
        assert asyncio.run(fifty_calls_through_an_outage()) == list(range(50))
    lines = [r.getMessage() for r in caplog.records if r.name == "beacon.codec"]
    assert len(lines) == 2, lines
    assert "waits and retries" in lines[0] and "answers again" in lines[1]


async def test_a_registry_refusal_is_a_permanent_error_not_an_outage(
    registry_settings: Settings, unique: Callable[[str], str]
) -> None:
    """A 4xx (here 404: the schema is not registered and auto-registration is off) is not waited out as if the
    registry were down: RegistryError, not retryable, with the registry's status and what to run."""
    codec = MessageCodec(registry_settings.replace(schema_auto_register=False))
    topic = unique("unregistered")
    with pytest.raises(RegistryError) as caught:
        await asyncio.wait_for(retry_registry(codec.schema_id, topic), 30)  # a refusal is not retried
    error = caught.value
    assert not isinstance(error, RegistryUnavailableError) and not error.retryable
    assert error.status == 404
    assert f"{topic}-value" in str(error) and "beacon schemas register" in str(error)
