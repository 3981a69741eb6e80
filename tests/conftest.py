"""Session-wide fixtures: the real services the suite runs against, and per-test isolation.

Services are started once per run on test ports under ``.beacon-test/`` (by the first test process
that needs them; parallel workers share them) and stopped at the end of the run if this run started
them, unless ``BEACON_TEST_KEEP_SERVICES`` is set. ``BEACON_TEST_SERVICES=containers`` takes them from
Docker instead (``tests/services.py``). A test that needs a service it cannot have is skipped
locally and fails in CI (``CI=true``), so CI never passes by skipping.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from beacon.config import Settings
from tests import services

ROOT = Path(__file__).resolve().parents[1]
TEST_DATA_DIR = ROOT / ".beacon-test"
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}

#: Ports of the test services, apart from the development defaults so both can run at once.
TEST_KAFKA_PORT = 19092
TEST_KAFKA_CONTROLLER_PORT = 19093
TEST_REGISTRY_PORT = 18081


def unavailable(reason: str) -> None:
    """Skip locally, fail in CI: a missing service must never make CI green."""
    if IN_CI:
        pytest.fail(f"required service unavailable in CI: {reason}", pytrace=False)
    pytest.skip(reason)


def pytest_configure(config: pytest.Config) -> None:
    """In the process that runs the session (not in xdist workers): choose the services, start the
    containers when asked for, and give the run an id its workers inherit."""
    if hasattr(config, "workerinput"):
        return
    os.environ.setdefault(services.RUN_ENV, uuid.uuid4().hex)
    try:
        mode = services.services_mode(os.environ)
    except services.ServicesChoiceError as exc:
        raise pytest.UsageError(str(exc)) from exc
    if mode == "containers":
        containers = services.Containers()
        config.stash[CONTAINERS] = containers
        containers.start()


def pytest_unconfigure(config: pytest.Config) -> None:
    """At the very end of the run, in the process that ran the session: stop what this run started."""
    if hasattr(config, "workerinput"):
        return
    containers = config.stash.get(CONTAINERS, None)
    if containers is not None:
        containers.stop()
    stop_what_this_run_started()


def start_local_services() -> None:
    """Start the local broker, then the registry, unless they answer already (``scripts/test`` calls this
    ahead of pytest, through ``tests/warm_services.py``; the fixtures below do the same on first need)."""
    from beacon.ops import kafka_local, registry_local

    settings = make_settings()
    services.ensure_local(TEST_DATA_DIR, "kafka", lambda: kafka_local.ensure(settings))
    services.ensure_local(TEST_DATA_DIR, "registry", lambda: registry_local.ensure(settings))


def stop_what_this_run_started() -> None:
    """Stop the local registry and broker if this run started them, unless ``BEACON_TEST_KEEP_SERVICES``."""
    keep = bool(os.environ.get("BEACON_TEST_KEEP_SERVICES"))
    settings = make_settings()
    if services.started_by_this_run(TEST_DATA_DIR, "registry") and not keep:
        from beacon.ops import registry_local

        registry_local.stop(settings)
    if services.started_by_this_run(TEST_DATA_DIR, "kafka") and not keep:
        from beacon.ops import kafka_local

        kafka_local.stop(settings)


CONTAINERS = pytest.StashKey[services.Containers]()


def make_settings(**overrides: Any) -> Settings:
    """Settings for tests: test ports and data dir, ignoring the developer's environment (the broker and
    registry addresses come from the containers when ``BEACON_TEST_SERVICES=containers``)."""
    values: dict[str, Any] = {
        "data_dir": TEST_DATA_DIR,
        "kafka_bootstrap": os.environ.get(services.KAFKA_ENV, f"127.0.0.1:{TEST_KAFKA_PORT}"),
        "kafka_controller_port": TEST_KAFKA_CONTROLLER_PORT,
        "schema_registry_url": os.environ.get(
            services.REGISTRY_ENV, f"http://127.0.0.1:{TEST_REGISTRY_PORT}/apis/ccompat/v7"
        ),
        "kafka_heap": "512m",
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)


@pytest.fixture(scope="session")
def kafka_settings() -> Settings:
    """Settings whose bootstrap points at a running real broker (started here if needed)."""
    from beacon.errors import BeaconError
    from beacon.ops import kafka_local

    settings = make_settings()
    try:
        # A broker already answering on the test port (another checkout's, kept running; the container's)
        # serves as well: every test uses its own topics and groups. Stopped by pytest_unconfigure.
        services.ensure_local(TEST_DATA_DIR, "kafka", lambda: kafka_local.ensure(settings))
    except BeaconError as exc:
        unavailable(f"cannot start the local Kafka broker: {exc}")
    return settings


@pytest.fixture(scope="session")
def registry_settings(kafka_settings: Settings) -> Settings:
    """Settings with the real broker and the real schema registry (Apicurio) running."""
    from beacon.errors import BeaconError
    from beacon.ops import registry_local

    try:
        services.ensure_local(TEST_DATA_DIR, "registry", lambda: registry_local.ensure(kafka_settings))
    except BeaconError as exc:
        unavailable(f"cannot start the local schema registry: {exc}")
    return kafka_settings


@pytest.fixture
def unique() -> Callable[[str], str]:
    """A name no other test uses: for topics, groups, users."""
    return lambda prefix: f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def new_topic(kafka_settings: Settings, unique: Callable[[str], str]) -> Callable[..., str]:
    """Create a fresh topic on the test broker and return its name."""
    from beacon.kafka import TopicSpec, ensure_topics

    def create(partitions: int = 12, prefix: str = "t") -> str:
        name = unique(prefix)
        ensure_topics(kafka_settings, [TopicSpec(name, partitions, 1, {})], strict=True)
        return name

    return create


@pytest.fixture
async def fake_whatsapp() -> AsyncIterator[tuple[Any, str]]:
    """The fake WhatsApp Cloud API on a free port: ``(fake, base_url)``; token "dev-access-token",
    app secret "dev-secret"; set ``fake.state.gateway_url`` to drive webhooks into a gateway."""
    from beacon.fakes.whatsapp.server import FakeCloudApi, running

    fake = FakeCloudApi(access_token="dev-access-token", app_secret="dev-secret", gateway_url="http://127.0.0.1:9")
    async with running(fake) as url:
        yield fake, url
