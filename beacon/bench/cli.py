"""``beacon bench ...``: one subcommand per benchmark module."""

from __future__ import annotations

import typer

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

    asyncio.run(bench(database_url, requests, concurrency, latency_rate, workers))


@bench_app.command("codec")
def codec(seconds: float = typer.Option(3.0, help="Seconds per measurement.")) -> None:
    """Encode+decode round trips/s of a typical text message (needs the schema registry running)."""
    from beacon.bench.codec import report, run
    from beacon.config import get_settings

    typer.echo(report(run(get_settings(), seconds)))
