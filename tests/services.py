"""Where the suite's services come from: ``BEACON_TEST_SERVICES=local`` (the default) or ``containers``.

``local``: the broker and registry from ``ops/`` on the test ports, started by the first test process
that needs them (a file lock makes parallel workers wait for one another instead of racing), and stopped
at the end of the run by the process that runs the session (so one worker finishing early never stops
them under the others); PostgreSQL from ``scripts/postgres``.
``containers``: testcontainers' Kafka, PostgreSQL and the Confluent schema-registry image, started once
by that same process when a Docker engine answers; asked for without one, the run stops with a message
saying so.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

MODES = ("local", "containers")

#: Set by the process that chose containers, read by every test process (xdist workers inherit it).
KAFKA_ENV = "BEACON_TEST_KAFKA_BOOTSTRAP"
REGISTRY_ENV = "BEACON_TEST_REGISTRY_URL"
DATABASE_ENV = "BEACON_TEST_DATABASE_URL"
#: One id per run, shared by its workers: the marker of the services this run started.
RUN_ENV = "BEACON_TEST_RUN"

KAFKA_IMAGE = "confluentinc/cp-kafka:7.6.0"
REGISTRY_IMAGE = "confluentinc/cp-schema-registry:7.6.0"
POSTGRES_IMAGE = "postgres:16-alpine"


class ServicesChoiceError(Exception):
    """The services the run asked for cannot be had: the message says why and what to do."""


def docker_problem() -> str | None:
    """None when a Docker engine answers (the one ``DOCKER_HOST`` or the default socket names), else why not."""
    try:
        import docker  # comes with testcontainers
    except ImportError:
        return "the testcontainers package is not installed (pip install 'testcontainers>=4.8,<5')"
    where = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    try:
        client = docker.from_env(timeout=10)
        client.ping()
    except Exception as exc:  # docker raises several unrelated types for "no engine"; each is the answer
        return f"no Docker engine answered at {where} ({type(exc).__name__}: {exc})"
    return None


def services_mode(env: Mapping[str, str], problem: Callable[[], str | None] = docker_problem) -> str:
    """The mode ``BEACON_TEST_SERVICES`` asks for, after checking it can be had."""
    mode = env.get("BEACON_TEST_SERVICES", "local").strip().lower() or "local"
    if mode not in MODES:
        raise ServicesChoiceError(f"BEACON_TEST_SERVICES={mode!r} is not one of {', '.join(MODES)}")
    if mode == "containers" and (why := problem()) is not None:
        raise ServicesChoiceError(
            f"BEACON_TEST_SERVICES=containers needs a Docker engine, but {why}. "
            "Start Docker (or point DOCKER_HOST at one), or unset BEACON_TEST_SERVICES to use the local services."
        )
    return mode


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created if missing) across processes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_local(data_dir: Path, name: str, ensure: Callable[[], float | None]) -> None:
    """Run ``ensure`` (start the service unless one answers) under a lock, and note when this run started it."""
    with locked(data_dir / f"{name}.lock"):
        if ensure() is not None:
            (data_dir / f"{name}.started-by").write_text(os.environ.get(RUN_ENV, ""))


def started_by_this_run(data_dir: Path, name: str) -> bool:
    """True (once: the note is removed) when this run started ``name``."""
    note = data_dir / f"{name}.started-by"
    try:
        ours = note.read_text() == os.environ.get(RUN_ENV, "")
    except FileNotFoundError:
        return False
    if ours:
        note.unlink()
    return ours


class Containers:
    """Kafka, the Confluent schema registry and PostgreSQL in Docker, on one network; their addresses in
    the environment for every test process."""

    def __init__(self) -> None:
        self._started: list[Any] = []

    def start(self) -> None:
        from testcontainers.community.kafka import KafkaContainer
        from testcontainers.community.postgres import PostgresContainer
        from testcontainers.core.container import DockerContainer
        from testcontainers.core.network import Network
        from testcontainers.core.wait_strategies import LogMessageWaitStrategy

        network = Network().create()
        self._started.append(network)
        kafka = KafkaContainer(KAFKA_IMAGE).with_network(network).with_network_aliases("kafka")
        self._started.append(kafka.start())
        registry = (
            DockerContainer(REGISTRY_IMAGE)
            .with_network(network)
            .with_env("SCHEMA_REGISTRY_HOST_NAME", "registry")
            .with_env("SCHEMA_REGISTRY_KAFKASTORE_BOOTSTRAP_SERVERS", "PLAINTEXT://kafka:9092")
            .with_env("SCHEMA_REGISTRY_LISTENERS", "http://0.0.0.0:8081")
            .with_exposed_ports(8081)
            .waiting_for(LogMessageWaitStrategy("Server started, listening for requests"))
        )
        self._started.append(registry.start())
        postgres = PostgresContainer(POSTGRES_IMAGE, username="beacon", password="beacon", dbname="beacon_test",
                                     driver="asyncpg")
        self._started.append(postgres.start())
        os.environ[KAFKA_ENV] = kafka.get_bootstrap_server()
        host, port = registry.get_container_host_ip(), registry.get_exposed_port(8081)
        os.environ[REGISTRY_ENV] = f"http://{host}:{port}"
        os.environ[DATABASE_ENV] = postgres.get_connection_url()

    def stop(self) -> None:
        for thing in reversed(self._started):
            with contextlib.suppress(Exception):  # best effort at the end of the run: Ryuk reaps what is left
                if hasattr(thing, "stop"):
                    thing.stop()
                else:
                    thing.remove()
        self._started.clear()
