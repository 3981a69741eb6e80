"""Session-wide fixtures: the real services the suite runs against, and per-test isolation.

Services are started once per session on test ports under ``.beacon-test/`` and stopped at the
end if this session started them. A test that needs a service it cannot have is skipped
locally and fails in CI (``CI=true``), so CI never passes by skipping.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from beacon.config import Settings

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


def make_settings(**overrides: Any) -> Settings:
    """Settings for tests: test ports and data dir, ignoring the developer's environment."""
    values: dict[str, Any] = {
        "data_dir": TEST_DATA_DIR,
        "kafka_bootstrap": f"127.0.0.1:{TEST_KAFKA_PORT}",
        "kafka_controller_port": TEST_KAFKA_CONTROLLER_PORT,
        "schema_registry_url": f"http://127.0.0.1:{TEST_REGISTRY_PORT}/apis/ccompat/v7",
        "kafka_heap": "512m",
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)


@pytest.fixture(scope="session")
def kafka_settings() -> Iterator[Settings]:
    """Settings whose bootstrap points at a running real broker (started here if needed)."""
    from beacon.errors import BeaconError
    from beacon.ops import kafka_local

    settings = make_settings()
    try:
        # A broker already answering on the test port (another checkout's, kept running) serves as well:
        # every test uses its own topics and groups.
        took = kafka_local.ensure(settings)
    except BeaconError as exc:
        unavailable(f"cannot start the local Kafka broker: {exc}")
    yield settings
    if took is not None and not os.environ.get("BEACON_TEST_KEEP_SERVICES"):
        kafka_local.stop(settings)


@pytest.fixture(scope="session")
def registry_settings(kafka_settings: Settings) -> Iterator[Settings]:
    """Settings with the real broker and the real schema registry (Apicurio) running."""
    from beacon.errors import BeaconError
    from beacon.ops import registry_local

    try:
        took = registry_local.ensure(kafka_settings)
    except BeaconError as exc:
        unavailable(f"cannot start the local schema registry: {exc}")
    yield kafka_settings
    if took is not None and not os.environ.get("BEACON_TEST_KEEP_SERVICES"):
        registry_local.stop(kafka_settings)


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
