"""The whole of ``beacon bench e2e``: its runs in order (Kafka baseline and stack at two rates, then the bare
topology at both) and its report (tables and plots). Apart from ``beacon.bench.e2e`` (the runs themselves)
because the bare topology's comparison builds on those runs."""

from __future__ import annotations

from pathlib import Path

import httpx

from beacon.bench.bare.compare import bare_runs, plot_percentiles, ratio_table, stack_shape
from beacon.bench.e2e import (
    RunResult,
    Stack,
    baseline_in_own_process,
    hops_report,
    plot,
    process_table,
    run_stack,
    table,
)


async def bench(stack: Stack, *, rate: float, seconds: float, latency_rate: float, latency_seconds: float,
                users: int) -> list[RunResult]:
    """The probe, then baseline and stack at the latency rate, then both at the throughput rate, then the bare
    topology at both (``write_report`` writes the tables and plots)."""
    async with httpx.AsyncClient(timeout=30) as client:
        await stack.probe(client)
    settings = stack.settings
    results = [await baseline_in_own_process(settings, latency_rate, latency_seconds)]
    results.append(await run_stack(stack, f"stack at {latency_rate:.0f}/s", latency_rate, latency_seconds, users))
    results.append(await baseline_in_own_process(settings, rate, seconds))
    results.append(await run_stack(stack, f"stack at {rate:.0f}/s", rate, seconds, users))
    results += await bare_baseline(stack, [(latency_rate, latency_seconds), (rate, seconds)], users)
    return results


async def bare_baseline(stack: Stack, runs: list[tuple[float, float]], users: int) -> list[RunResult]:
    """The bare topology at the stack runs' rates and durations, shaped like the stack (workers, partitions)."""
    workers, partitions = stack_shape(stack.settings, stack.pids())
    return await bare_runs(stack.settings, runs, users=users, workers=workers, partitions=partitions)


def write_report(results: list[RunResult], out: Path) -> list[str]:
    """Write the tables (``<out>.md``) and the plots (``<out>.png``, ``<out>-percentiles.png``); returns
    what to tell the operator about them (where they are, or how to get the plots when matplotlib is missing)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    md = out.with_suffix(".md")
    md.write_text(table(results) + "\n\n" + process_table(results) + "\n\n" + ratio_table(results) + "\n\n"
                  + hops_report(results) + "\n")
    try:
        percentiles = out.with_name(out.name + "-percentiles.png")
        plot(results, out.with_suffix(".png"))
        plot_percentiles(results, percentiles)
    except ImportError:
        return [f"table: {md}; no plots: matplotlib is not installed (it is in the bench extra: "
                "pip install -e '.[bench]', or re-run ./scripts/setup)"]
    return [f"plots: {out.with_suffix('.png')} (latency and replies over time), {percentiles} (percentiles and "
            f"throughput per run); table: {md}"]
