"""A real local Nostr relay for the NostrMQ tests, and helpers to talk to it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from beacon.config import Settings
from beacon.ops.process import free_port
from tests.conftest import make_settings


def relay_settings(data_dir: Path) -> Settings:
    return make_settings(data_dir=data_dir, nostr_relay_port=free_port())


@pytest.fixture(scope="session")
def relay_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A ``nostr-relay`` of our own (free port, tmp data dir) for the session. It stores events without
    checking signatures, as a careless public relay might, so tests can prove the receiver drops forged ones."""
    from beacon.nostr import relay_local

    settings = relay_settings(tmp_path_factory.mktemp("relay"))
    status, _ = relay_local.start(settings, verify_signatures=False)
    yield status.url
    relay_local.stop(settings)
