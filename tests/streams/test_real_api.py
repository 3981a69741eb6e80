"""A worker against the real API layer (``beacon api`` on SQLite): the HTTP contract holds end to end."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from beacon.codec import MessageCodec
from beacon.messages import BeaconMessage
from tests.streams.harness import (
    Collector,
    RealApi,
    Topics,
    Worker,
    all_committed,
    produce,
    wait_until,
)


@pytest.fixture
def real_api(topics: Topics, tmp_path: Path) -> Iterator[str]:
    """``beacon api`` in its own process with a fresh SQLite database; yields its URL."""
    api = RealApi(topics.settings, tmp_path).start()
    try:
        yield api.url
    finally:
        api.stop()


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
