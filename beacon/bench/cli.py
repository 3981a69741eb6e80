"""``beacon bench ...``: one subcommand per benchmark module."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from beacon.config import Settings

bench_app = typer.Typer(help="Benchmarks that print their figures.", no_args_is_help=True)


@bench_app.command("api")
def api(
    database_url: str = typer.Option(None, help="SQLAlchemy URL to benchmark (default: a fresh SQLite file)."),
    requests: int = typer.Option(5000, help="Requests per full-speed run."),
    concurrency: int = typer.Option(64, help="Concurrent client connections."),
    latency_rate: float = typer.Option(300.0, help="Requests/s of the paced latency run."),
    workers: int = typer.Option(1, help="Server processes."),
) -> None:
    """Processing endpoint requests/s and latency vs GET /healthz on the same server."""
    import asyncio

    from beacon.bench.api import bench

    if asyncio.run(bench(database_url, requests, concurrency, latency_rate, workers)):
        raise typer.Exit(1)


@bench_app.command("codec")
def codec(seconds: float = typer.Option(3.0, help="Seconds per measurement.")) -> None:
    """Encode+decode round trips/s of a typical text message (needs the schema registry running)."""
    from beacon.bench.codec import report, run
    from beacon.config import get_settings

    typer.echo(report(run(get_settings(), seconds)))


@bench_app.command("e2e")
def e2e(
    rate: float = typer.Option(1000.0, help="Target messages/s of the throughput run."),
    seconds: float = typer.Option(20.0, help="Seconds of the throughput run."),
    latency_rate: float = typer.Option(100.0, help="Messages/s of the latency run."),
    latency_seconds: float = typer.Option(15.0, help="Seconds of the latency run."),
    users: int = typer.Option(
        2000, help="Simulated users writing in turn (many, so no user exceeds the Cloud API pair limit)."
    ),
    fake_url: str = typer.Option(None, help="The fake Cloud API (default http://127.0.0.1:BEACON_FAKE_WHATSAPP_PORT)."),
    gateway_url: str = typer.Option(None, help="The gateway (default http://127.0.0.1:BEACON_WHATSAPP_GATEWAY_PORT)."),
    out: str = typer.Option(None, help="Where to write the plots and table (default <data dir>/bench/e2e)."),
    only: str = typer.Option(None, help="Run only this part: `bare` (the bare topology at both rates; no stack "
                             "needed)."),
    workers: int = typer.Option(None, help="Worker processes of the bare topology with --only bare (default "
                                "BEACON_DEV_WORKERS)."),
) -> None:
    """Webhook POST -> reply at the fake Cloud API through the running stack (`beacon dev`), vs raw Kafka and
    the bare topology."""
    import asyncio
    import os
    import platform

    from beacon.bench.bare.compare import bare_summary, ratio_table
    from beacon.bench.e2e import Stack, given_up_report, hops_report, process_table, summary, table
    from beacon.bench.e2e_bench import bench, write_report
    from beacon.config import get_settings
    from beacon.errors import BeaconError

    settings = get_settings()
    target = Path(out) if out else settings.data_dir / "bench" / "e2e"
    if only is not None:
        _e2e_only(only, settings, rate=rate, seconds=seconds, latency_rate=latency_rate,
                  latency_seconds=latency_seconds, users=users, workers=workers, target=target)
        return
    try:
        stack = Stack.find(settings, fake_url, gateway_url)
        typer.echo(f"bench e2e against {stack.describe()}")
        results = asyncio.run(bench(stack, rate=rate, seconds=seconds, latency_rate=latency_rate,
                                    latency_seconds=latency_seconds, users=users))
    except BeaconError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc

    typer.echo(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    typer.echo(table(results))
    typer.echo(process_table(results))
    typer.echo(ratio_table(results))
    typer.echo(hops_report(results))
    s = summary(results)
    typer.echo(
        f"sustained end to end: {s['throughput']:,.0f} msg/s (target >= 1,000; "
        f"{s['throughput_ratio']:.2f}x of the raw Kafka round trip at the same rate)"
    )
    typer.echo(f"p99 at {latency_rate:.0f} msg/s: {s['p99_low']:.1f} ms (target <= 100; "
               f"{s['p99_ratio']:.1f}x of raw Kafka's p99); CPU {s['cpu_ms_low']:.1f} ms per message")
    if (against_bare := bare_summary(results)) is not None:
        typer.echo(against_bare)
    typer.echo(f"lost {s['lost']}, duplicate replies {s['duplicates']}, per-user order violations "
               f"{s['order_violations']} (all must be 0)")
    for line in write_report(results, target):
        typer.echo(line)
    for line in given_up_report(s):
        typer.echo(line, err=True)
    if s["refused"] or s["unanswered"] or s["lost"] or s["duplicates"] or s["order_violations"]:
        raise typer.Exit(1)


def _e2e_only(only: str, settings: Settings, *, rate: float, seconds: float, latency_rate: float,
              latency_seconds: float, users: int, workers: int | None, target: Path) -> None:
    """``beacon bench e2e --only bare``: the bare topology's two runs alone, with their tables and plots."""
    import asyncio

    from beacon.bench.bare.compare import bare_runs, stack_shape
    from beacon.bench.e2e import process_table, table
    from beacon.bench.e2e_bench import write_report
    from beacon.errors import BeaconError

    if only != "bare":
        typer.echo(f"error: --only takes `bare`, not {only!r}", err=True)
        raise typer.Exit(2)
    default_workers, partitions = stack_shape(settings, {})
    n = workers or default_workers
    typer.echo(f"bench e2e --only bare: {n} worker process(es), {partitions} partitions, broker "
               f"{settings.kafka.bootstrap}")
    try:
        results = asyncio.run(bare_runs(settings, [(latency_rate, latency_seconds), (rate, seconds)], users=users,
                                        workers=n, partitions=partitions))
    except BeaconError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(table(results))
    typer.echo(process_table(results))
    for line in write_report(results, target):
        typer.echo(line)
    if any(r.lost or r.refused or r.unanswered for r in results):
        typer.echo("error: the bare topology lost or refused messages: its figures do not describe a healthy run",
                   err=True)
        raise typer.Exit(1)


@bench_app.command("gateway")
def gateway(
    seconds: float = typer.Option(5.0, help="Seconds per inbound run."),
    concurrency: int = typer.Option(64, help="Concurrent webhook connections at full speed."),
    paced_rate: float = typer.Option(500.0, help="Webhooks/s of the latency run."),
    sends: int = typer.Option(10000, help="Replies put on bm_out for the outbound run."),
    users: int = typer.Option(1000, help="Distinct users the messages spread over."),
    channel: str = typer.Option("all", help="whatsapp, telegram or all (one after the other)."),
) -> None:
    """One gateway process per channel: webhooks/s into bm_in and sends/s out, vs raw Kafka and raw HTTP."""
    from beacon.bench.gateway import WHATSAPP, measure, report
    from beacon.bench.telegram import TELEGRAM
    from beacon.config import get_settings
    from beacon.errors import BeaconError
    from beacon.gateway.base import run_fast

    benches = {"whatsapp": WHATSAPP, "telegram": TELEGRAM}
    chosen = list(benches) if channel == "all" else [channel]
    if any(c not in benches for c in chosen):
        typer.echo(f"error: --channel is whatsapp, telegram or all, not {channel!r}", err=True)
        raise typer.Exit(2)
    for name in chosen:
        coro = measure(get_settings(), benches[name], seconds=seconds, concurrency=concurrency, paced_rate=paced_rate,
                             sends=sends, users=users)
        try:
            figures = run_fast(coro)  # uvloop when installed: the client side should not be the bottleneck
        except BeaconError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from exc
        typer.echo(report(figures, seconds=seconds, concurrency=concurrency, channel=name))


@bench_app.command("worker")
def worker(
    messages: int = typer.Option(30000, help="Messages in the backlog of the fast runs."),
    users: int = typer.Option(1000, help="Users the messages come from (per-user order is checked)."),
    modes: str = typer.Option("api,echo,slow,burst", help="Comma-separated runs: api, echo, slow, burst."),
    burst: int = typer.Option(5, help="Messages each user sends in a row in the burst runs (coalescing off, on)."),
    window_ms: int = typer.Option(1500, help="BEACON_COALESCE_WINDOW_MS of the burst run with coalescing on."),
    slow_latency: float = typer.Option(1.0, help="Seconds the stub API takes in the slow run."),
    slow_messages: int = typer.Option(10000, help="Messages in the backlog of the slow run."),
    max_in_flight: int = typer.Option(1000, help="BEACON_WORKER_MAX_IN_FLIGHT of the worker."),
    partitions: int = typer.Option(12, help="Partitions of the benchmark's topics."),
) -> None:
    """Messages/s through one worker process (HTTP stub API, in-process echo, slow API) vs raw Kafka."""
    import os
    import platform

    from beacon.bench.worker import bench, report
    from beacon.config import get_settings

    results = bench(get_settings(), messages=messages, users=users, modes=modes.split(","),
                    slow_latency=slow_latency, slow_messages=slow_messages, max_in_flight=max_in_flight,
                    partitions=partitions, burst=burst, window_ms=window_ms)
    typer.echo(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    typer.echo(report(results))


@bench_app.command("nostr")
def nostr(
    messages: int = typer.Option(300, help="Messages of the throughput run (and events of the relay's burst)."),
    users: int = typer.Option(50, help="Users they come from (one message per user in flight)."),
    paced_rate: float = typer.Option(5.0, help="Messages/s of the latency run."),
    paced_seconds: float = typer.Option(10.0, help="Seconds of the latency run."),
    relay_rounds: int = typer.Option(100, help="Sequential publish -> receive round trips of the relay baseline."),
) -> None:
    """Messages/s and latency through `beacon bridge nostr` and a local relay, vs the relay's own round trip."""
    import asyncio

    from beacon.bench.nostr import bench, report
    from beacon.config import get_settings

    figures = asyncio.run(bench(get_settings(), messages=messages, users=users, paced_rate=paced_rate,
                                paced_seconds=paced_seconds, relay_rounds=relay_rounds))
    typer.echo(report(figures, messages=messages, users=users))


@bench_app.command("chaos")
def chaos(
    fault: Annotated[list[str] | None, typer.Option(
        "--fault", help="A fault to inject (repeatable; default: all, in order): worker-sigkill, gateway-sigkill, "
        "api-down, postgres-restart, registry-down, broker-down, leader-sigkill, cloud-api-503.")] = None,
    seconds: float = typer.Option(60.0, help="Length of the long outages; the others scale with it."),
    rate: float = typer.Option(60.0, help="Messages/s of the steady load."),
    users: int = typer.Option(100, help="Simulated users writing in turn."),
    database: str = typer.Option("postgres", help="Database of the API layer: postgres (a cluster of its own) "
                                 "or sqlite."),
    calm: float = typer.Option(5.0, help="Seconds of steady load before and after each fault."),
    drain_timeout: float = typer.Option(120.0, help="Seconds a row waits for its backlog to drain."),
    out: str = typer.Option(None, help="Where to write chaos.md, chaos.json and the stack's data "
                            "(default <data dir>/bench/chaos)."),
) -> None:
    """Inject each fault in turn under a steady load through a whole stack of its own; print the table."""
    import asyncio
    import time
    from pathlib import Path

    from beacon.bench.chaos.faults import FAULTS
    from beacon.bench.chaos.run import bench, table
    from beacon.config import get_settings
    from beacon.errors import BeaconError

    names = fault or list(FAULTS)
    unknown = [n for n in names if n not in FAULTS]
    if unknown:
        typer.echo(f"error: unknown fault(s) {', '.join(unknown)}; choose from {', '.join(FAULTS)}", err=True)
        raise typer.Exit(2)
    if database not in {"postgres", "sqlite"}:
        typer.echo(f"error: --database is postgres or sqlite, not {database}", err=True)
        raise typer.Exit(2)
    settings = get_settings()
    target = Path(out) if out else settings.data_dir / "bench" / "chaos"
    began = time.monotonic()
    try:
        rows = asyncio.run(bench(settings, [FAULTS[n] for n in names], seconds=seconds, rate=rate, users=users,
                                 out=target, database=database, calm=calm, drain_timeout=drain_timeout,
                                 say=typer.echo))
    except BeaconError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(table(rows))
    typer.echo(f"run took {time.monotonic() - began:.0f}s; table in {target / 'chaos.md'} and {target / 'chaos.json'}")
    if not all(r.clean for r in rows if not r.note.startswith("not run")):
        raise typer.Exit(1)
