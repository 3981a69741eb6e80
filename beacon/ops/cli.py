"""``beacon kafka ...`` and ``beacon topics ...``: the local broker and Beacon's topics."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from beacon.config import Settings, get_settings
from beacon.errors import BeaconError

if TYPE_CHECKING:
    from beacon.ops import kafka_local

kafka_app = typer.Typer(help="The local Kafka from ops/: one node, or a cluster with --brokers 3.",
                        no_args_is_help=True)
topics_app = typer.Typer(help="Beacon's topics: bm_in, bm_out, bm_dlq.", no_args_is_help=True)


def _mb(value: int | None) -> str:
    return "?" if value is None else f"{value / 1024 / 1024:.0f} MB"


@kafka_app.command("start")
def kafka_start(
    brokers: Annotated[
        int, typer.Option("--brokers", "-b", help="1: one broker+controller; 3: a local cluster of three KRaft "
                          "nodes (node i on the bootstrap port + 2(i-1), its controller on the controller port "
                          "+ 2(i-1)).")
    ] = 1,
) -> None:
    """Start the local Kafka (formats storage the first time); harmless if it already runs."""
    from beacon.ops import kafka_local, kafka_tls

    settings = get_settings()
    try:
        st, took = kafka_local.start(settings, brokers=brokers)
    except BeaconError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    if st.nodes:
        state = "already running" if took is None else f"started in {took:.1f}s"
        typer.echo(f"Kafka cluster of {len(st.nodes)} nodes {state}; data in {st.data_dir}.")
        _echo_nodes(st)
        _echo_cluster_env(st)
    elif took is None:
        typer.echo(f"Kafka already running at {st.bootstrap} (pid {st.pid}, RSS {_mb(st.rss_bytes)}).")
    else:
        typer.echo(
            f"Kafka started at {st.bootstrap} in {took:.1f}s (pid {st.pid}, RSS {_mb(st.rss_bytes)}); "
            f"data in {st.data_dir}, log in {settings.log_dir / 'kafka.log'}."
        )
    if not st.nodes and kafka_tls.secured(settings):
        typer.echo(f"Listening with SASL_SSL ({settings.kafka.sasl_mechanism}, user {settings.kafka.sasl_username}); "
                   f"clients trust its CA: BEACON_KAFKA_SSL_CA_FILE={kafka_tls.ca_file(settings)}")


def _echo_nodes(st: kafka_local.KafkaStatus) -> None:
    for n in st.nodes:
        state = f"alive, pid {n.pid}, RSS {_mb(n.rss_bytes)}" if n.alive else "DOWN"
        typer.echo(f"  node {n.node_id}: 127.0.0.1:{n.port} (controller {n.controller_port}) {state}; log {n.log_file}")


def _echo_cluster_env(st: kafka_local.KafkaStatus) -> None:
    from beacon.ops.kafka_cluster import replication

    factor, min_isr = replication(len(st.nodes))
    typer.echo("Point Beacon at every node, with replicated topics:")
    typer.echo(f"  export BEACON_KAFKA_BOOTSTRAP={st.bootstrap} BEACON_TOPIC_REPLICATION_FACTOR={factor} "
               f"BEACON_TOPIC_MIN_INSYNC_REPLICAS={min_isr}")


@kafka_app.command("stop")
def kafka_stop() -> None:
    """Stop the broker, or every node of the cluster, cleanly (SIGTERM, then wait)."""
    from beacon.ops import kafka_local

    if kafka_local.stop(get_settings()):
        typer.echo("Kafka stopped.")
    else:
        typer.echo("Kafka was not running.")


@kafka_app.command("status")
def kafka_status() -> None:
    """Say whether the broker (or each node of the cluster) runs, where, and its memory. Exit code 1 if not
    running (for a cluster: if any node is down)."""
    from beacon.ops import kafka_local

    st = kafka_local.status(get_settings())
    if st.nodes:
        alive = sum(n.alive for n in st.nodes)
        typer.echo(f"Kafka cluster: {alive} of {len(st.nodes)} nodes alive (RSS {_mb(st.rss_bytes)} in all), "
                   f"data in {st.data_dir}.")
        _echo_nodes(st)
        if not st.running:
            typer.echo(f"Start the missing nodes with `beacon kafka start --brokers {len(st.nodes)}`.")
            raise typer.Exit(1)
        _echo_cluster_env(st)
        return
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
    _warn_unreplicated(settings)
    if report.mismatches:
        raise typer.Exit(2)


def _warn_unreplicated(settings: Settings) -> None:
    """A cluster of three or more brokers with topics kept on one of them: a common slip (the default is 1)."""
    from beacon.kafka import registered_brokers

    factor = settings.topics.replication_factor
    brokers = registered_brokers(settings.kafka.bootstrap, timeout=settings.kafka.request_timeout, settings=settings)
    if brokers >= 3 and factor < 3:
        typer.echo(
            f"warning: the cluster at {settings.kafka.bootstrap} has {brokers} brokers but Beacon's topics are kept on "
            f"{factor} (BEACON_TOPIC_REPLICATION_FACTOR={factor}): losing one broker stops their partitions there "
            "until it returns. Set BEACON_TOPIC_REPLICATION_FACTOR=3 and BEACON_TOPIC_MIN_INSYNC_REPLICAS=2 (topics "
            "that exist keep their replication: recreate them while empty).",
            err=True,
        )


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


schemas_app = typer.Typer(help="The BeaconMessage schema in the registry: register it, check a change.",
                          no_args_is_help=True)


@schemas_app.command("register")
def schemas_register() -> None:
    """Set the compatibility level of the bm_in/bm_out subjects and register schemas/beacon_message.avsc."""
    from beacon.ops import schemas

    settings = get_settings()
    try:
        ids = schemas.register(settings)
    except BeaconError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    except Exception as exc:  # the registry client raises its own errors and httpx's
        typer.echo(f"error: registering with {settings.registry.url} failed: {exc}", err=True)
        raise typer.Exit(1) from exc
    for subject, schema_id in ids.items():
        typer.echo(f"{subject}: schema id {schema_id} ({settings.registry.compatibility})")


@schemas_app.command("check")
def schemas_check(
    history: bool = typer.Option(
        False, "--history",
        help="Check against the released versions in schemas/history/ (seeded into a scratch subject) "
        "instead of the live subjects: what CI runs on a fresh registry.",
    ),
) -> None:
    """Compare the working tree's schema with the registered history; exit 1 with what would break."""
    import uuid

    from beacon.ops import schemas

    settings = get_settings()
    try:
        if history:
            subject = f"beacon-history-check-{uuid.uuid4().hex[:8]}-value"
            count = schemas.seed_history(settings, subject)
            typer.echo(f"seeded {count} released version(s) from {schemas.HISTORY_DIR} into {subject}")
            subjects = [subject]
        else:
            subjects = [f"{settings.topics.inbound}-value", f"{settings.topics.outbound}-value"]
        reports = [schemas.check_subject(settings, subject) for subject in subjects]
    except Exception as exc:  # registry client and httpx errors: say where and what
        typer.echo(f"error: checking against {settings.registry.url} failed: {exc}", err=True)
        raise typer.Exit(1) from exc
    failed = False
    for report in reports:
        if report.registered_versions == 0:
            typer.echo(f"{report.subject}: nothing registered yet; `beacon schemas register` will create it")
        elif report.compatible:
            state = "already registered" if report.registered_id is not None else "compatible"
            typer.echo(f"{report.subject}: {state} ({report.registered_versions} version(s) checked)")
        else:
            failed = True
            typer.echo(f"{report.subject}: INCOMPATIBLE with the registered history:", err=True)
        for problem in report.problems:
            typer.echo(f"  - {problem}", err=not report.compatible)
    if failed:
        raise typer.Exit(1)
