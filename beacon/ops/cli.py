"""``beacon kafka ...`` and ``beacon topics ...``: the local broker and Beacon's topics."""

from __future__ import annotations

import typer

from beacon.config import get_settings
from beacon.errors import BeaconError

kafka_app = typer.Typer(help="The local single-node Kafka from ops/ (a background process).", no_args_is_help=True)
topics_app = typer.Typer(help="Beacon's topics: bm_in, bm_out, bm_dlq.", no_args_is_help=True)


def _mb(value: int | None) -> str:
    return "?" if value is None else f"{value / 1024 / 1024:.0f} MB"


@kafka_app.command("start")
def kafka_start() -> None:
    """Start the broker (formats storage the first time); harmless if it already runs."""
    from beacon.ops import kafka_local

    settings = get_settings()
    try:
        st, took = kafka_local.start(settings)
    except BeaconError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    if took is None:
        typer.echo(f"Kafka already running at {st.bootstrap} (pid {st.pid}, RSS {_mb(st.rss_bytes)}).")
    else:
        typer.echo(
            f"Kafka started at {st.bootstrap} in {took:.1f}s (pid {st.pid}, RSS {_mb(st.rss_bytes)}); "
            f"data in {st.data_dir}, log in {settings.log_dir / 'kafka.log'}."
        )


@kafka_app.command("stop")
def kafka_stop() -> None:
    """Stop the broker cleanly (SIGTERM, then wait)."""
    from beacon.ops import kafka_local

    if kafka_local.stop(get_settings()):
        typer.echo("Kafka stopped.")
    else:
        typer.echo("Kafka was not running.")


@kafka_app.command("status")
def kafka_status() -> None:
    """Say whether the broker runs, where, and how much memory it uses. Exit code 1 if not running."""
    from beacon.ops import kafka_local

    st = kafka_local.status(get_settings())
    if not st.running:
        typer.echo(f"Kafka is not running (data dir {st.data_dir}). Start it with `beacon kafka start`.")
        raise typer.Exit(1)
    typer.echo(f"Kafka running at {st.bootstrap} (pid {st.pid}, RSS {_mb(st.rss_bytes)}), data in {st.data_dir}.")


@topics_app.command("ensure")
def topics_ensure() -> None:
    """Create bm_in, bm_out and bm_dlq if missing; report any that differ from the settings."""
    from beacon.kafka import ensure_topics

    settings = get_settings()
    try:
        report = ensure_topics(settings)
    except BeaconError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    for name in report.created:
        typer.echo(f"created {name}")
    for name in report.unchanged:
        typer.echo(f"unchanged {name}")
    for problem in report.mismatches:
        typer.echo(f"MISMATCH {problem}", err=True)
    if not report.changed and not report.mismatches:
        typer.echo("Nothing to change: all topics exist as configured.")
    if report.mismatches:
        raise typer.Exit(2)


registry_app = typer.Typer(help="The local schema registry from ops/ (Apicurio, a background process).",
                           no_args_is_help=True)


@registry_app.command("start")
def registry_start() -> None:
    """Start the registry (fetches it with Maven the first time); harmless if it already runs."""
    from beacon.ops import registry_local

    settings = get_settings()
    try:
        st, took = registry_local.start(settings)
    except BeaconError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    if took is None:
        typer.echo(f"Schema registry already running at {st.url} (pid {st.pid}, RSS {_mb(st.rss_bytes)}).")
    else:
        typer.echo(
            f"Schema registry started at {st.url} in {took:.1f}s (pid {st.pid}, RSS {_mb(st.rss_bytes)}); "
            f"data in {st.data_dir}, log in {settings.log_dir / 'registry.log'}."
        )


@registry_app.command("stop")
def registry_stop() -> None:
    """Stop the registry cleanly (SIGTERM, then wait)."""
    from beacon.ops import registry_local

    if registry_local.stop(get_settings()):
        typer.echo("Schema registry stopped.")
    else:
        typer.echo("Schema registry was not running.")


@registry_app.command("status")
def registry_status() -> None:
    """Say whether the registry runs, where, and its memory. Exit code 1 if not running."""
    from beacon.ops import registry_local

    st = registry_local.status(get_settings())
    if not st.running:
        typer.echo(f"Schema registry is not running (data dir {st.data_dir}). Start it with `beacon registry start`.")
        raise typer.Exit(1)
    typer.echo(f"Schema registry running at {st.url} (pid {st.pid}, RSS {_mb(st.rss_bytes)}), data in {st.data_dir}.")
