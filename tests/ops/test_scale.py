"""`beacon scale`: the pure decision rules, and one real run against the broker with dummy workers."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from beacon.config import Settings
from beacon.kafka import alter_group_offsets, make_producer
from beacon.ops.scale import ScalePolicy, Scaler, decide

P = ScalePolicy(min_workers=1, max_workers=6, up_lag=100, down_lag=10, cooldown=30)


def d(current: int, lag: int, *, partitions: int = 12, now: float = 100.0, last: float | None = None,
      policy: ScalePolicy = P) -> int:
    return decide(policy, current=current, lag=lag, partitions=partitions, now=now, last_change=last).workers


def test_scales_up_on_lag_by_what_the_lag_needs_but_within_bounds() -> None:
    assert d(1, 100) == 1  # at the threshold: hold
    assert d(1, 101) == 2
    assert d(1, 450) == 5  # straight to what the lag needs
    assert d(2, 10_000) == 6  # capped by --max
    assert d(2, 10_000, partitions=3) == 3  # never above the partition count
    assert d(5, 10_000, partitions=3) == 3  # already above it (partitions shrank / max lowered): come down


def test_hysteresis_holds_between_the_thresholds_and_scales_down_one_at_a_time() -> None:
    assert d(3, 150) == 3  # below 100 per worker, above 10 per remaining worker: hold
    assert d(3, 19) == 2  # 19 < 10 * 2
    assert d(3, 0) == 2  # one at a time
    assert d(1, 0) == 1  # never below --min
    assert d(0, 0) == 1  # up to --min at once


def test_cooldown_blocks_changes_but_not_the_bounds() -> None:
    assert d(1, 5000, now=110, last=100) == 1
    assert d(1, 5000, now=131, last=100) == 6
    assert d(8, 0, now=110, last=100) == 6


def test_scale_to_zero_when_idle_and_back_on_lag() -> None:
    zero = ScalePolicy(min_workers=0, max_workers=4, up_lag=100, down_lag=10, cooldown=0)
    assert d(1, 0, policy=zero) == 0
    assert d(1, 3, policy=zero) == 1
    assert d(0, 1, policy=zero) == 1
    assert d(0, 0, policy=zero) == 0


def test_policy_rejects_thresholds_without_hysteresis() -> None:
    with pytest.raises(ValueError):
        ScalePolicy(up_lag=10, down_lag=10)
    with pytest.raises(ValueError):
        ScalePolicy(min_workers=3, max_workers=2)


def test_scaler_follows_real_lag_with_dummy_workers(
    kafka_settings: Settings, new_topic: Callable[..., str], unique: Callable[[str], str], tmp_path: Path
) -> None:
    topic = new_topic(3)
    group = unique("scale")
    producer = make_producer(kafka_settings)
    for i in range(300):
        producer.produce(topic, value=b"x", key=f"k{i}".encode(), partition=i % 3)
    assert producer.flush(10) == 0
    lines: list[str] = []
    now = [0.0]
    scaler = Scaler(
        kafka_settings.replace(worker_web_port=47000, data_dir=tmp_path),
        ScalePolicy(min_workers=1, max_workers=5, up_lag=50, down_lag=5, cooldown=10),
        worker_argv=[sys.executable, "-c", "import time; time.sleep(600)"],
        group=group, topic=topic, say=lines.append, clock=lambda: now[0],
    )
    try:
        first = scaler.step()  # 300 unconsumed over 3 partitions: as many workers as partitions, not 5
        assert first.workers == 3 and scaler.workers == ["worker-1", "worker-2", "worker-3"]
        assert all(c.pid is not None for c in scaler.supervisor.children.values())
        ports = sorted(c.spec.env["BEACON_WORKER_WEB_PORT"] for c in scaler.supervisor.children.values())
        assert ports == ["47000", "47001", "47002"]

        alter_group_offsets(kafka_settings, group, topic, {0: 100, 1: 100, 2: 100})  # the group caught up
        now[0] = 5.0
        assert scaler.step().reason.startswith("cooling down") and len(scaler.workers) == 3
        now[0] = 20.0
        assert scaler.step().workers == 2 and scaler.workers == ["worker-1", "worker-2"]
        now[0] = 40.0
        assert scaler.step().workers == 1
        now[0] = 60.0
        assert scaler.step().workers == 1  # --min
    finally:
        scaler.supervisor.stop()
    assert any("0 -> 3 worker(s)" in line for line in lines), lines
    assert (tmp_path / "logs" / "worker-3.log").exists()
