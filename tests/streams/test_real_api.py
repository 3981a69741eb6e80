"""A worker against the real API layer (``beacon api`` on SQLite): the HTTP contract holds end to end."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from beacon.codec import MessageCodec
from beacon.messages import BeaconMessage
from beacon.ops.process import free_port
from tests.streams.harness import (
    BEACON,
    TOKEN,
    Collector,
    Topics,
    Worker,
    all_committed,
    produce,
    wait_until,
)


@pytest.fixture
def real_api(topics: Topics, tmp_path: Path) -> Iterator[str]:
    """``beacon api`` in its own process with a fresh SQLite database; yields its URL."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("BEACON_")}
    env.update({
        "BEACON_DATA_DIR": str(tmp_path / "api"),
        "BEACON_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'api.db'}",
        "BEACON_API_TOKEN": TOKEN,
        "BEACON_API_PORT": str(port),
        "BEACON_KAFKA_BOOTSTRAP": topics.settings.kafka_bootstrap,
        "BEACON_SCHEMA_REGISTRY_URL": topics.settings.schema_registry_url,
        "BEACON_TOPIC_OUT": topics.settings.topic_out,
    })
    (tmp_path / "api").mkdir()
    subprocess.run([BEACON, "api", "migrate"], env=env, cwd=tmp_path, check=True, capture_output=True, timeout=60)
    with open(tmp_path / "api.log", "ab") as log:
        proc = subprocess.Popen([BEACON, "api"], env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        try:
            return httpx.get(url + "/healthz", timeout=0.5).status_code == 200
        except httpx.HTTPError:
            return proc.poll() is not None  # exited: stop waiting, fail below

    try:
        wait_until(healthy, 30, "the API to start")
        assert proc.poll() is None, (tmp_path / "api.log").read_text()[-3000:]
        yield url
    finally:
        proc.terminate()
        proc.wait(15)


def test_worker_and_real_api_answer_commands_and_texts_in_order(
    topics: Topics, codec: MessageCodec, real_api: str, start_worker: Callable[..., Worker], replies: Collector,
) -> None:
    worker = start_worker(real_api)
    users = 30
    messages = [
        BeaconMessage.inbound_text(channel="whatsapp", account="100", user_id=f"a{u}", text=text,
                                   channel_message_id=f"wamid.a{u}.{i}")
        for i, text in enumerate(["/ping", "hello", "/ping"])
        for u in range(users)
    ]
    status = BeaconMessage.status_update(channel="whatsapp", account="100", user_id="a0", channel_message_id="x",
                                         status="delivered")
    produce(topics.settings, [*messages, status], codec)

    got = replies.wait_replies(users * 3, timeout=60, workers=[worker])

    by_user: dict[str, list[str]] = {}
    for r in got:
        by_user.setdefault(r.user_id, []).append(r.text or "")
    assert by_user == {f"a{u}": ["pong", "You said: hello", "pong"] for u in range(users)}
    inbound_ids = {m.id for m in messages}
    assert {r.reply_to_id for r in got} == inbound_ids
    wait_until(lambda: all_committed(topics.settings, topics.group), 30, "every offset committed (status included)")
