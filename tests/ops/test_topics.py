"""`beacon topics ensure` against the real broker: idempotent, reports mismatches, fails clearly."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable

from beacon.config import Settings
from beacon.kafka import TopicSpec, ensure_topics, make_admin


def _ensure(settings: Settings, names: dict[str, str], **extra: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "BEACON_KAFKA_BOOTSTRAP": settings.kafka.bootstrap,
        "BEACON_TOPIC_IN": names["in"],
        "BEACON_TOPIC_OUT": names["out"],
        "BEACON_TOPIC_DLQ": names["dlq"],
        **extra,
    }
    return subprocess.run(
        [sys.executable, "-m", "beacon", "topics", "ensure"], env=env, capture_output=True, text=True, timeout=60
    )


def test_ensure_twice_creates_then_changes_nothing(kafka_settings: Settings, unique: Callable[[str], str]) -> None:
    names = {k: unique(f"ens-{k}") for k in ("in", "out", "dlq")}
    first = _ensure(kafka_settings, names, BEACON_TOPIC_PARTITIONS="4")
    assert first.returncode == 0, first.stderr
    assert all(f"created {n}" in first.stdout for n in names.values())

    second = _ensure(kafka_settings, names, BEACON_TOPIC_PARTITIONS="4")
    assert second.returncode == 0, second.stderr
    assert "created" not in second.stdout
    assert "Nothing to change" in second.stdout

    topics = make_admin(kafka_settings).list_topics(timeout=5).topics
    assert all(len(topics[n].partitions) == 4 for n in names.values())


def test_fewer_partitions_than_configured_is_reported(kafka_settings: Settings, unique: Callable[[str], str]) -> None:
    names = {k: unique(f"mis-{k}") for k in ("in", "out", "dlq")}
    ensure_topics(kafka_settings, [TopicSpec(names["in"], 2, 1, {})])
    result = _ensure(kafka_settings, names, BEACON_TOPIC_PARTITIONS="6")
    assert result.returncode == 2
    assert f"MISMATCH {names['in']}: has 2 partitions but 6 are configured" in result.stderr


def test_unreachable_bootstrap_fails_clearly_instead_of_hanging(unique: Callable[[str], str]) -> None:
    env = {**os.environ, "BEACON_KAFKA_BOOTSTRAP": "127.0.0.1:1", "BEACON_KAFKA_REQUEST_TIMEOUT": "2"}
    result = subprocess.run(
        [sys.executable, "-m", "beacon", "topics", "ensure"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1
    assert "cannot reach Kafka at 127.0.0.1:1" in result.stderr
    assert "beacon kafka start" in result.stderr
