"""Fixtures of the worker tests: fresh topics, a stub API process, worker processes, collectors."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from beacon.codec import MessageCodec, get_codec
from beacon.config import Settings
from tests.streams.harness import Collector, StubApi, Topics, Worker


@pytest.fixture
def topics(registry_settings: Settings, unique: Callable[[str], str]) -> Topics:
    return Topics.create(registry_settings, unique)


@pytest.fixture
def codec(registry_settings: Settings) -> MessageCodec:
    return get_codec(registry_settings)


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[list[Worker | StubApi]]:
    """Every process a test starts; all stopped at the end (in reverse)."""
    started: list[Worker | StubApi] = []
    yield started
    for proc in reversed(started):
        proc.stop()


@pytest.fixture
def start_stub(processes: list[Worker | StubApi], tmp_path: Path) -> Callable[..., StubApi]:
    def start(latency: tuple[float, float] = (0.0, 0.0), port: int | None = None, run: bool = True) -> StubApi:
        stub = StubApi(tmp_path, latency, port)
        processes.append(stub)
        return stub.start() if run else stub

    return start


@pytest.fixture
def start_worker(processes: list[Worker | StubApi], tmp_path: Path, topics: Topics) -> Callable[..., Worker]:
    def start(api_url: str, command: list[str] | None = None, **env: str) -> Worker:
        worker = Worker(topics.settings, topics.group, api_url, tmp_path,
                        {f"BEACON_{k.upper()}": v for k, v in env.items()})
        if command is not None:
            worker.command = command
        processes.append(worker)
        return worker.start()

    return start


@pytest.fixture
def replies(topics: Topics, codec: MessageCodec) -> Iterator[Collector]:
    collector = Collector(topics.settings, topics.settings.topics.outbound, codec)
    yield collector
    collector.close()


@pytest.fixture
def dead_letters(topics: Topics) -> Iterator[Collector]:
    collector = Collector(topics.settings, topics.settings.topics.dlq, None)
    yield collector
    collector.close()
