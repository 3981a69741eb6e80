"""`beacon replay` and `beacon lag` against the real broker: offsets move as asked, never under live consumers."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import pytest

from beacon.config import Settings
from beacon.kafka import Consumer, committed_offsets, make_consumer, make_producer
from beacon.ops import replay as rp
from beacon.ops.lag import group_lag, total_lag


def _produce(settings: Settings, topic: str, per_partition: int, partitions: int) -> None:
    producer = make_producer(settings)
    for p in range(partitions):
        for i in range(per_partition):
            producer.produce(topic, value=f"m{i}".encode(), key=f"k{p}".encode(), partition=p)
    assert producer.flush(10) == 0


def _consume_all(settings: Settings, topic: str, group: str, expected: int) -> Consumer:
    """Consume ``expected`` messages in ``group`` and commit them; returns the (still open) consumer."""
    consumer = make_consumer(settings, group)
    consumer.subscribe([topic])
    seen = 0
    deadline = time.monotonic() + 30
    while seen < expected and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is None or msg.error():
            continue
        consumer.store_offsets(msg)
        seen += 1
    assert seen == expected
    consumer.commit(asynchronous=False)
    return consumer


def _cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "BEACON_KAFKA_BOOTSTRAP": settings.kafka.bootstrap, "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "beacon", *args], env=env, capture_output=True, text=True, timeout=60)


@pytest.fixture
def consumed(
    kafka_settings: Settings, new_topic: Callable[..., str], unique: Callable[[str], str]
) -> Iterator[tuple[str, str]]:
    """A 3-partition topic with 5 messages per partition, all consumed and committed by a fresh group."""
    topic = new_topic(3)
    group = unique("g")
    _produce(kafka_settings, topic, 5, 3)
    consumer = _consume_all(kafka_settings, topic, group, 15)
    consumer.close()
    yield topic, group


def test_target_offset_is_clamped_to_the_log() -> None:
    assert rp.target_offset("earliest", before=7, low=2, high=9) == 2
    assert rp.target_offset("latest", before=7, low=2, high=9) == 9
    assert rp.target_offset("offset", before=7, low=2, high=9, value=100) == 9
    assert rp.target_offset("offset", before=7, low=2, high=9, value=0) == 2
    assert rp.target_offset("shift", before=7, low=2, high=9, value=-3) == 4
    assert rp.target_offset("shift", before=7, low=2, high=9, value=-30) == 2
    assert rp.target_offset("shift", before=None, low=2, high=9, value=1) == 3
    assert rp.target_offset("datetime", before=7, low=2, high=9, at_time=5) == 5
    assert rp.target_offset("datetime", before=7, low=2, high=9, at_time=-1) == 9


def test_replay_to_earliest_rewinds_chosen_partitions_and_lag_shows_it(
    kafka_settings: Settings, consumed: tuple[str, str]
) -> None:
    topic, group = consumed
    assert total_lag(group_lag(kafka_settings, group, topic)) == 0

    dry = rp.plan(kafka_settings, group=group, topic=topic, mode="earliest", partitions=[0, 2])
    assert [(m.partition, m.before, m.after) for m in dry.moves] == [(0, 5, 0), (2, 5, 0)]
    assert committed_offsets(kafka_settings, group, topic)[(topic, 0)] == 5  # planning changes nothing

    done = rp.apply(kafka_settings, dry)
    assert done.applied
    after = committed_offsets(kafka_settings, group, topic)
    assert (after[(topic, 0)], after[(topic, 1)], after[(topic, 2)]) == (0, 5, 0)
    rows = group_lag(kafka_settings, group, topic)
    assert {r.partition: r.lag for r in rows} == {0: 5, 1: 0, 2: 5}


def test_shift_and_datetime_modes(kafka_settings: Settings, consumed: tuple[str, str]) -> None:
    topic, group = consumed
    shifted = rp.apply(kafka_settings, rp.plan(kafka_settings, group=group, topic=topic, mode="shift", value=-2))
    assert [m.after for m in shifted.moves] == [3, 3, 3]
    future = rp.plan(kafka_settings, group=group, topic=topic, mode="datetime", when=datetime.now(UTC).replace(
        year=datetime.now(UTC).year + 1))
    assert [m.after for m in future.moves] == [5, 5, 5]  # nothing that late: the end
    past = rp.plan(kafka_settings, group=group, topic=topic, mode="datetime", when=datetime(2000, 1, 1, tzinfo=UTC))
    assert [m.after for m in past.moves] == [0, 0, 0]


def test_replay_refuses_while_the_group_has_active_members(
    kafka_settings: Settings, new_topic: Callable[..., str], unique: Callable[[str], str]
) -> None:
    topic = new_topic(2)
    group = unique("g")
    _produce(kafka_settings, topic, 2, 2)
    consumer = _consume_all(kafka_settings, topic, group, 4)  # stays subscribed: an active member
    try:
        result = _cli(kafka_settings, "replay", "--group", group, "--topic", topic, "--to-earliest")
        assert result.returncode == 1
        assert "active member" in result.stderr and "Stop its consumers" in result.stderr
        assert committed_offsets(kafka_settings, group, topic)[(topic, 0)] == 2
    finally:
        consumer.close()


def test_cli_prints_before_and_after_and_lag_table(kafka_settings: Settings, consumed: tuple[str, str]) -> None:
    topic, group = consumed
    dry = _cli(kafka_settings, "replay", "-g", group, "-t", topic, "--to-offset", "1", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "dry run" in dry.stdout and "would move 3 of 3" in dry.stdout
    assert committed_offsets(kafka_settings, group, topic)[(topic, 1)] == 5

    real = _cli(kafka_settings, "replay", "-g", group, "-t", topic, "--to-offset", "1", "--partitions", "1")
    assert real.returncode == 0, real.stderr
    assert "moved 1 of 1" in real.stdout
    rows = [[c.strip() for c in line.split("│")[1:-1]] for line in real.stdout.splitlines() if "│" in line]
    assert ["1", "5", "1", "0", "5"] in rows  # partition, before, after, earliest, end

    lag = _cli(kafka_settings, "lag", "--group", group)
    assert lag.returncode == 0, lag.stderr
    assert f"group {group}: total lag 4 over 3 partition(s)" in lag.stdout

    bad = _cli(kafka_settings, "replay", "-g", group, "-t", topic, "--to-earliest", "--shift-by", "1")
    assert bad.returncode == 2 and "exactly one" in bad.stderr
