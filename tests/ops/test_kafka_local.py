"""`beacon kafka start / stop / status` with a broker of its own: durability, idempotent start, clear errors."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from beacon.config import Settings
from beacon.kafka import TopicSpec, ensure_topics, make_consumer, make_producer
from beacon.ops import kafka_local
from beacon.ops.process import free_port
from tests.conftest import make_settings


def _beacon(settings: Settings, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "BEACON_DATA_DIR": str(settings.data_dir),
        "BEACON_KAFKA_BOOTSTRAP": settings.kafka.bootstrap,
        "BEACON_KAFKA_CONTROLLER_PORT": str(settings.local.kafka_controller_port),
        "BEACON_KAFKA_HEAP": settings.local.kafka_heap,
    }
    return subprocess.run(
        [sys.executable, "-m", "beacon", *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[Settings]:
    """Settings for a broker only this test uses (so stopping it disturbs nobody)."""
    settings = make_settings(
        data_dir=tmp_path / "data",
        kafka_bootstrap=f"127.0.0.1:{free_port()}",
        kafka_controller_port=free_port(),
        kafka_heap="256m",
    )
    yield settings
    kafka_local.stop(settings)


def test_acknowledged_messages_survive_stop_and_start(own_broker: Settings) -> None:
    started = _beacon(own_broker, "kafka", "start")
    assert started.returncode == 0, started.stderr
    assert "Kafka started" in started.stdout

    again = _beacon(own_broker, "kafka", "start")
    assert again.returncode == 0 and "already running" in again.stdout

    ensure_topics(own_broker, [TopicSpec("durable", 3, 1, {})], strict=True)
    producer = make_producer(own_broker)
    for i in range(500):
        producer.produce("durable", value=str(i).encode(), key=str(i % 7).encode())
    assert producer.flush(30) == 0

    stopped = _beacon(own_broker, "kafka", "stop")
    assert stopped.returncode == 0 and "stopped" in stopped.stdout
    status = _beacon(own_broker, "kafka", "status")
    assert status.returncode == 1 and "not running" in status.stdout

    assert _beacon(own_broker, "kafka", "start").returncode == 0
    consumer = make_consumer(own_broker, "durability-check")
    consumer.subscribe(["durable"])
    values: set[int] = set()
    for _ in range(60):
        for msg in consumer.consume(500, timeout=1.0):
            assert msg.error() is None
            values.add(int(msg.value() or b"-1"))
        if len(values) == 500:
            break
    consumer.close()
    assert values == set(range(500))


def test_start_refuses_a_port_already_in_use(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        settings = make_settings(
            data_dir=tmp_path, kafka_bootstrap=f"127.0.0.1:{port}", kafka_controller_port=free_port()
        )
        result = _beacon(settings, "kafka", "start", timeout=60)
    assert result.returncode == 1
    assert f"Port {port}" in result.stderr and "already in use" in result.stderr


def test_zero_partitions_is_refused_with_a_clear_error() -> None:
    env = {**os.environ, "BEACON_TOPIC_PARTITIONS": "0"}
    result = subprocess.run(
        [sys.executable, "-m", "beacon", "topics", "ensure"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert "BEACON_TOPIC_PARTITIONS" in result.stderr and "at least 1" in result.stderr
