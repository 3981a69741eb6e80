"""The worker's dependency health on its own: one outage per change of state, one probe, waiters released."""

from __future__ import annotations

import asyncio
import logging

import pytest

from beacon.streams.health import API, REGISTRY, DependencyHealth
from beacon.streams.metrics import WorkerMetrics


class FakeReadyz:
    """A /readyz that answers "not ready" until ``ready`` is set; counts the probes at once."""

    def __init__(self) -> None:
        self.ready = asyncio.Event()
        self.probes = 0
        self.concurrent = 0
        self.peak = 0

    async def __call__(self) -> str | None:
        self.probes += 1
        self.concurrent += 1
        self.peak = max(self.peak, self.concurrent)
        await asyncio.sleep(0.001)
        self.concurrent -= 1
        return None if self.ready.is_set() else "503 database unavailable"


def sample(metrics: WorkerMetrics, name: str, dependency: str) -> float:
    value = metrics.registry.get_sample_value(name, {"dependency": dependency})
    assert value is not None
    return value


async def test_an_outage_is_reported_once_probed_by_one_task_and_releases_the_waiters(
    caplog: pytest.LogCaptureFixture,
) -> None:
    metrics = WorkerMetrics()
    readyz = FakeReadyz()
    health = DependencyHealth(metrics, probe_base_delay=0.001, probe_max_delay=0.005, waiting=lambda: 50)
    health.register(API, readyz)
    health.register(REGISTRY)
    caplog.set_level(logging.INFO, "beacon.streams")

    for i in range(50):  # fifty messages fail at once
        health.report_down(API, f"connection refused ({i})")
    waiters = [asyncio.create_task(health.wait_up(API)) for _ in range(50)]
    gate = asyncio.create_task(health.wait_all_up())
    while readyz.probes < 20:
        await asyncio.sleep(0.001)

    assert not any(w.done() for w in waiters) and not gate.done()
    assert readyz.peak == 1  # one prober, however many messages wait
    assert sample(metrics, "beacon_worker_dependency_up", API) == 0
    assert sample(metrics, "beacon_worker_dependency_outages_total", API) == 1
    assert sample(metrics, "beacon_worker_dependency_down_seconds", API) > 0
    readyz.ready.set()
    await asyncio.wait_for(asyncio.gather(*waiters, gate), 5)

    assert sample(metrics, "beacon_worker_dependency_up", API) == 1
    assert sample(metrics, "beacon_worker_dependency_down_seconds", API) == 0
    messages = [r.getMessage() for r in caplog.records]
    assert [m for m in messages if "unreachable" in m] == [
        "API unreachable (connection refused (0)) — pausing fetch, 50 messages waiting"
    ]
    assert len([m for m in messages if "API is back after" in m]) == 1
    await health.close()


async def test_a_failure_while_readyz_answers_is_the_messages_own() -> None:
    metrics = WorkerMetrics()
    readyz = FakeReadyz()
    readyz.ready.set()
    health = DependencyHealth(metrics, probe_base_delay=0.001, probe_max_delay=0.005)
    health.register(API, readyz)

    results = await asyncio.gather(*(health.confirm_up(API, "500") for _ in range(30)))

    assert all(results) and health.all_up
    assert readyz.probes == 1  # callers at the same moment share one probe
    assert sample(metrics, "beacon_worker_dependency_outages_total", API) == 0

    readyz.ready.clear()
    assert await health.confirm_up(API, "timeout") is False
    assert not health.is_up(API) and sample(metrics, "beacon_worker_dependency_outages_total", API) == 1
    readyz.ready.set()
    await asyncio.wait_for(health.wait_up(API), 5)
    await health.close()


async def test_new_work_waits_while_any_dependency_is_down() -> None:
    health = DependencyHealth(WorkerMetrics(), probe_base_delay=0.001, probe_max_delay=0.005)
    health.register(API)
    health.register(REGISTRY)
    health.report_down(REGISTRY, "registry refused the connection")
    gate = asyncio.create_task(health.wait_all_up())
    await asyncio.sleep(0)
    health.report_down(API, "connection refused")
    health.report_up(REGISTRY)
    await asyncio.sleep(0.01)
    assert not gate.done()  # the registry is back, the API is not
    health.report_up(API)
    await asyncio.wait_for(gate, 5)
    await health.close()
