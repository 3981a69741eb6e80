"""The example bot (examples/orderbot) behind two real workers and the real API, one worker
SIGKILLed mid-stream: every message is answered once (by reply id), in order, and each order's
side effect (its outbox event) is delivered exactly once."""

from __future__ import annotations

import signal
import sqlite3
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from beacon.codec import MessageCodec
from beacon.messages import BeaconMessage, InteractiveReply
from tests.streams.harness import Collector, RealApi, Topics, Worker, all_committed, produce, wait_until

REPO = Path(__file__).resolve().parents[2]
REPLIED = 'beacon_worker_messages_total{outcome="replied",reason=""}'


def order_flow(user: str) -> list[BeaconMessage]:
    """One user's order: open the menu, pick a dish, say how many, confirm."""

    def press(n: int, button: str) -> BeaconMessage:
        msg = BeaconMessage.inbound_text(channel="whatsapp", account="100", user_id=user, text="",
                                         channel_message_id=f"wamid.{user}.{n}")
        return msg.model_copy(update={"kind": "interactive", "text": None,
                                      "interactive_reply": InteractiveReply(type="button_reply", id=button)})

    two = BeaconMessage.inbound_text(channel="whatsapp", account="100", user_id=user, text="2",
                                     channel_message_id=f"wamid.{user}.3")
    return [press(1, "order"), press(2, "dish:pizza"), two, press(4, "confirm")]


def outbox_done(db: Path) -> tuple[int, int]:
    """(events stored, events marked delivered) in the API's SQLite database."""
    with sqlite3.connect(db) as conn:
        total, done = conn.execute("SELECT count(*), count(done_at) FROM outbox").fetchone()
    return int(total), int(done)


@pytest.mark.slow
def test_worker_killed_mid_stream_every_order_placed_once_every_message_answered_once(
    topics: Topics, codec: MessageCodec, start_worker: Callable[..., Worker], replies: Collector, tmp_path: Path,
) -> None:
    users = 100
    outbox_log = tmp_path / "outbox.jsonl"
    api = RealApi(topics.settings, tmp_path)
    api.env.update({
        "BEACON_API_PIPELINE": "commands,orderbot.handlers:bot,fallback",
        "BEACON_OUTBOX_CALLBACK": "tests.bot.sink:record",
        "BOT_TEST_OUTBOX_LOG": str(outbox_log),
        "PYTHONPATH": f"{REPO}:{REPO / 'examples'}",
    })
    first, second = start_worker(api.url), start_worker(api.url)  # they wait for the API while it starts
    api.start()
    try:
        first.wait_assigned()
        second.wait_assigned()
        flows = [order_flow(f"o{u}") for u in range(users)]
        messages = [msg for step in zip(*flows, strict=True) for msg in step]
        # Half of every order (menu, dish) before the kill, the rest (quantity, confirm) after: the
        # survivor must carry on the flows the killed worker's turns left in the users' state.
        half = len(messages) // 2
        produce(topics.settings, messages[:half], codec)
        wait_until(lambda: first.metric(REPLIED) >= 40, 60, "the first worker to get going")
        first.signal(signal.SIGKILL)
        first.wait(10)
        produce(topics.settings, messages[half:], codec)

        got = replies.wait_replies(len(messages), timeout=120, workers=[second])
        wait_until(lambda: all_committed(topics.settings, topics.group), 30, "the survivor to commit everything")

        def delivered() -> list[dict[str, str]]:
            lines = outbox_log.read_bytes().splitlines() if outbox_log.exists() else []
            return [orjson.loads(line) for line in lines]

        wait_until(lambda: outbox_done(tmp_path / "api.db") == (users, users), 30,
                   "every order's outbox event stored and marked delivered")
    finally:
        api.stop()

    assert len(got) == len(messages)  # one reply per message, unique by id
    by_user: dict[str, list[str]] = {}
    for reply in got:
        by_user.setdefault(reply.user_id, []).append((reply.text or "").split(" (ref")[0])
    assert by_user == {
        f"o{u}": ["Which dish?", "How many Pizza? (1-9)", "2 x Pizza: shall I place the order?",
                  "Order placed: 2 x Pizza"]
        for u in range(users)
    }
    events = delivered()  # complete: each event is written here before it is marked delivered
    assert len(events) == users  # each order's side effect once, none twice
    assert sorted(e["user_key"] for e in events) == sorted(f"whatsapp:100:o{u}" for u in range(users))
    assert all(e["kind"] == "order_placed" for e in events)
