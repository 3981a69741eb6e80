"""One worker process: bm_in -> API over HTTP -> bm_out, per-user order kept, offsets committed."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable

from beacon.codec import MessageCodec
from beacon.messages import BeaconMessage
from tests.streams.harness import Collector, StubApi, Topics, Worker, committed_and_end, produce, wait_until

USERS = 1000
PER_USER = 20


def conversation(users: int, per_user: int, prefix: str) -> list[BeaconMessage]:
    """``per_user`` texts from each of ``users`` users, interleaved across users."""
    return [
        BeaconMessage.inbound_text(channel="whatsapp", account="100", user_id=f"{prefix}{u}", text=f"m{i}",
                                   channel_message_id=f"wamid.{prefix}{u}.{i}")
        for i in range(per_user)
        for u in range(users)
    ]


def assert_in_order(replies: list[BeaconMessage], users: int, per_user: int) -> None:
    by_user: dict[str, list[str]] = defaultdict(list)
    for r in replies:
        by_user[r.user_id].append(r.text or "")
    assert len(by_user) == users
    expected = [f"You said: m{i}" for i in range(per_user)]
    wrong = {u: texts for u, texts in by_user.items() if texts != expected}
    assert not wrong, f"{len(wrong)} users got replies out of order, e.g. {next(iter(wrong.items()))}"


def test_thousand_users_get_their_replies_in_order_and_offsets_are_committed(
    topics: Topics, codec: MessageCodec, start_stub: Callable[..., StubApi], start_worker: Callable[..., Worker],
    replies: Collector,
) -> None:
    stub = start_stub(latency=(0.0, 0.004))
    worker = start_worker(stub.url)
    produce(topics.settings, conversation(USERS, PER_USER, "u"), codec)

    got = replies.wait_replies(USERS * PER_USER, timeout=120, workers=[worker])

    assert len(got) == USERS * PER_USER
    assert_in_order(got, USERS, PER_USER)
    assert all(r.reply_to_id and r.direction == "outbound" for r in got)
    wait_until(lambda: (lambda c, e: c == e)(*committed_and_end(topics.settings, topics.group)), 30,
               "the group's offsets to reach the end of bm_in")
    metrics = worker.metrics()
    assert metrics['beacon_worker_messages_total{outcome="replied",reason=""}'] == USERS * PER_USER
    assert metrics["beacon_worker_replies_total"] == USERS * PER_USER
    assert metrics["beacon_worker_in_flight"] == 0
    assert metrics["beacon_worker_processing_seconds_count"] == USERS * PER_USER
    lags = [v for k, v in metrics.items() if k.startswith("beacon_worker_lag{")]
    assert lags and all(v == 0 for v in lags)
