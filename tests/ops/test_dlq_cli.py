"""`beacon dlq list / show / redrive` against the real broker and registry."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable

from beacon.codec import MessageCodec
from beacon.config import Settings
from beacon.dlq import dead_letter
from beacon.kafka import AsyncProducer, make_consumer, make_producer
from beacon.messages import BeaconMessage
from beacon.ops import deadletters as dl


def _cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "BEACON_KAFKA_BOOTSTRAP": settings.kafka.bootstrap,
        "BEACON_SCHEMA_REGISTRY_URL": settings.registry.url,
        "BEACON_TOPIC_DLQ": settings.topics.dlq,
        "COLUMNS": "250",
    }
    return subprocess.run([sys.executable, "-m", "beacon", *args], env=env, capture_output=True, text=True, timeout=60)


async def _fill(settings: Settings, source: str) -> BeaconMessage:
    """Dead-letter one good message, one garbage value, and add one record without headers."""
    msg = BeaconMessage.inbound_text(channel="whatsapp", account="1065", user_id="447700900123", text="hello dlq",
                                     channel_message_id="wamid.dlq1")
    good = MessageCodec(settings).encode(msg, source)
    producer = AsyncProducer(settings)
    try:
        await dead_letter(producer, settings, key=msg.user_key.encode(), value=good, topic=source, partition=0,
                          offset=41, error=RuntimeError("API said 422"), attempts=3, origin="worker")
        await dead_letter(producer, settings, key=b"k2", value=b"\x07garbage", topic=source, partition=1, offset=7,
                          error="bad magic", attempts=1, origin="gateway-whatsapp")
        await producer.produce(settings.topics.dlq, b"no headers here", key=b"k3")
    finally:
        producer.close()
    return msg


async def test_list_show_and_redrive(
    registry_settings: Settings, new_topic: Callable[..., str], unique: Callable[[str], str]
) -> None:
    source = new_topic(2, prefix="src")
    settings = registry_settings.replace(topic_dlq=new_topic(1, prefix="dlq"))
    msg = await _fill(settings, source)

    letters = list(dl.iter_dead_letters(settings))
    assert [d.ref for d in letters] == ["0:0", "0:1", "0:2"]
    assert letters[0].info is not None and letters[0].info.topic == source and letters[0].info.attempts == 3
    assert dl.decode(settings, letters[0]).message == msg
    assert dl.decode(settings, letters[1]).problem is not None
    assert letters[2].info is None

    listed = _cli(settings, "dlq", "list")
    assert listed.returncode == 0, listed.stderr
    assert "3 record(s)" in listed.stdout
    assert "hello dlq" in listed.stdout and "not decodable" in listed.stdout and "RuntimeError" in listed.stdout

    shown = _cli(settings, "dlq", "show", "0:0")
    assert shown.returncode == 0, shown.stderr
    assert f"source:     {source} partition 0 offset 41" in shown.stdout
    assert "API said 422" in shown.stdout and '"text": "hello dlq"' in shown.stdout
    garbage = _cli(settings, "dlq", "show", "0:1")
    assert "not decodable" in garbage.stdout and "garbage" in garbage.stdout
    assert _cli(settings, "dlq", "show", "0:9").returncode == 1

    dry = _cli(settings, "dlq", "redrive", "--all", "--error-class", "RuntimeError", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert f"would redrive 0:0 -> {source}" in dry.stdout and "1 record(s) would be republished" in dry.stdout

    redriven = _cli(settings, "dlq", "redrive", "0:0")
    assert redriven.returncode == 0, redriven.stderr
    assert "redrove 1 of 1" in redriven.stdout

    consumer = make_consumer(settings, unique("check"))
    consumer.subscribe([source])
    got = None
    deadline = time.monotonic() + 30
    while got is None and time.monotonic() < deadline:
        m = consumer.poll(0.5)
        if m is not None and not m.error():
            got = m
    consumer.close()
    assert got is not None
    assert got.key() == msg.user_key.encode()
    assert MessageCodec(settings).decode(got.value(), topic=source) == msg
    assert (dl.H_REDRIVEN_FROM, f"{settings.topics.dlq}:0:0".encode()) in (got.headers() or [])

    headless = _cli(settings, "dlq", "redrive", "0:2")
    assert headless.returncode == 1 and "no beacon.dlq.source.topic header" in headless.stderr


def test_redrive_many_reports_progress_and_count(registry_settings: Settings, new_topic: Callable[..., str]) -> None:
    from beacon.dlq import dlq_headers

    source = new_topic(3, prefix="src")
    settings = registry_settings.replace(topic_dlq=new_topic(3, prefix="dlq"))
    producer = make_producer(settings)
    for i in range(300):
        producer.produce(settings.topics.dlq, value=f"v{i}".encode(), key=f"k{i % 7}".encode(),
                         headers=dl_headers(dlq_headers, source, i))
    assert producer.flush(10) == 0
    result = _cli(settings, "dlq", "redrive", "--all", "--origin", "worker")
    assert result.returncode == 0, result.stderr
    assert "redrove 300 of 300" in result.stdout


Header = tuple[str, str | bytes | None]


def dl_headers(make: Callable[..., list[tuple[str, bytes]]], source: str, i: int) -> list[Header]:
    return list(make(topic=source, partition=i % 3, offset=i, error_class="Boom", error_text="boom", attempts=1,
                     origin="worker"))
