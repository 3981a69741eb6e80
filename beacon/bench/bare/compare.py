"""The bare topology's runs in ``beacon bench e2e``, Beacon as a ratio of them, and the percentile plot.

The bare runs use the same driver, load pattern, users and durations as the stack runs (``run_stack``), on
the same broker with the same partition count and as many worker processes as the stack has.
"""

from __future__ import annotations

import math
from pathlib import Path

from beacon.bench.bare.topology import running
from beacon.bench.e2e import RunResult, run_stack
from beacon.config import Settings
from beacon.kafka import KafkaException, make_admin


def stack_shape(settings: Settings, pids: dict[str, int]) -> tuple[int, int]:
    """(worker processes, partitions of the inbound topic) of the stack the bare topology copies."""
    workers = sum(1 for name in pids if name.startswith("worker-")) or settings.local.dev_workers
    partitions = settings.topics.partitions
    try:
        topic = make_admin(settings).list_topics(settings.topics.inbound, timeout=5).topics.get(settings.topics.inbound)
    except KafkaException:
        topic = None
    if topic is not None and topic.error is None and topic.partitions:
        partitions = len(topic.partitions)
    return workers, partitions


async def bare_runs(settings: Settings, runs: list[tuple[float, float]], *, users: int, workers: int,
                    partitions: int) -> list[RunResult]:
    """One run of the bare topology per (rate, seconds), its processes started once and stopped after."""
    results = []
    async with running(settings, workers=workers, partitions=partitions) as topology:
        for rate, seconds in runs:
            result = await run_stack(topology, f"bare at {rate:.0f}/s", rate, seconds, users)
            result.kind = "bare"
            results.append(result)
    return results


def _ratio(value: float, reference: float) -> str:
    if math.isnan(value) or math.isnan(reference) or reference <= 0:
        return "n/a"
    return f"{value / reference:.2f}x"


def ratio_table(results: list[RunResult]) -> str:
    """Each stack run as a ratio of the baselines run at the same rate (bare topology, raw Kafka)."""
    rows = ["| Beacon run | ÷ baseline at the same rate | throughput | p50 | p99 | CPU ms/msg |",
            "|---|---|---|---|---|---|"]
    stacks = [r for r in results if r.kind == "stack"]
    for stack in stacks:
        for base in (r for r in results if r.kind in ("bare", "kafka") and r.rate == stack.rate):
            cpu = _ratio(stack.cpu_ms_per_message, base.cpu_ms_per_message) if base.kind == "bare" else "n/a"
            rows.append(f"| {stack.name} | {base.name} | {_ratio(stack.throughput, base.throughput)} | "
                        f"{_ratio(stack.pct(50), base.pct(50))} | {_ratio(stack.pct(99), base.pct(99))} | {cpu} |")
    if not stacks:
        rows.append("| (no stack run: nothing to compare) | | | | | |")
    return "\n".join(rows)


def bare_summary(results: list[RunResult]) -> str | None:
    """One line: Beacon at capacity and at the light rate as a multiple of the bare topology at the same rates."""
    stacks = sorted((r for r in results if r.kind == "stack"), key=lambda r: r.rate)
    bares = {r.rate: r for r in results if r.kind == "bare"}
    if not stacks or stacks[0].rate not in bares or stacks[-1].rate not in bares:
        return None
    low, high = stacks[0], stacks[-1]
    base_low, base_high = bares[low.rate], bares[high.rate]
    return (f"against the bare topology: throughput at {high.rate:.0f}/s "
            f"{_ratio(high.throughput, base_high.throughput)} (target >= 0.7x); at {low.rate:.0f}/s p50 "
            f"{_ratio(low.pct(50), base_low.pct(50))}, p99 {_ratio(low.pct(99), base_low.pct(99))}, CPU per message "
            f"{_ratio(low.cpu_ms_per_message, base_low.cpu_ms_per_message)}")


def plot_percentiles(results: list[RunResult], path: Path) -> None:
    """Bars of p50/p95/p99 latency and of throughput, one group per run (stack and baselines)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [r for r in results if r.latencies]
    fig, (lat, thr) = plt.subplots(1, 2, figsize=(13, 5))
    width = 0.27
    for i, q in enumerate((50, 95, 99)):
        lat.bar([x + (i - 1) * width for x in range(len(runs))], [r.pct(q) for r in runs], width, label=f"p{q}")
    lat.set_xticks(range(len(runs)), [r.name for r in runs], rotation=30, ha="right", fontsize=8)
    lat.set(ylabel="latency ms (scheduled send -> reply)", yscale="log", title="latency per run")
    lat.legend(fontsize=8)
    thr.bar(range(len(runs)), [r.throughput for r in runs], color=["C0" if r.kind == "stack" else "C7" for r in runs])
    thr.set_xticks(range(len(runs)), [r.name for r in runs], rotation=30, ha="right", fontsize=8)
    thr.set(ylabel="replies per second", title="throughput per run (Beacon blue, baselines grey)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
