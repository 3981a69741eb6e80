"""One worker process: bm_in -> API over HTTP -> bm_out, per-user order kept, offsets committed."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable

import pytest

from beacon.codec import MessageCodec
from beacon.messages import BeaconMessage
from tests.streams.harness import (
    FAUST,
    Collector,
    StubApi,
    Topics,
    Worker,
    all_committed,
    committed_offsets,
    find_record,
    produce,
    wait_until,
)

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


@pytest.mark.slow
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
    wait_until(lambda: all_committed(topics.settings, topics.group), 30,
               "the group's offsets to reach the end of bm_in")
    metrics = worker.metrics()
    assert metrics['beacon_worker_messages_total{outcome="replied",reason=""}'] == USERS * PER_USER
    assert metrics["beacon_worker_replies_total"] == USERS * PER_USER
    assert metrics["beacon_worker_in_flight"] == 0
    assert metrics["beacon_worker_processing_seconds_count"] == USERS * PER_USER
    lags = [v for k, v in metrics.items() if k.startswith("beacon_worker_lag{")]
    assert lags and all(v == 0 for v in lags)
    # Under this load, messages of different users shared API requests (group commit), never one user twice.
    stats = stub.stats()
    assert max(int(size) for size in stats["batches"]) > 1
    assert stats["shared_user_batches"] == 0


@pytest.mark.slow
def test_offsets_are_never_committed_past_an_unfinished_message(
    topics: Topics, codec: MessageCodec, start_stub: Callable[..., StubApi], start_worker: Callable[..., Worker],
    replies: Collector,
) -> None:
    stub = start_stub()
    worker = start_worker(stub.url, worker_api_timeout="30")
    slow = BeaconMessage.inbound_text(channel="whatsapp", account="100", user_id="slow", text="sleep:20 slow one",
                                      channel_message_id="wamid.slow")
    produce(topics.settings, [slow, *conversation(300, 2, "q")], codec)
    partition, offset = find_record(topics.settings, slow.user_key.encode())

    # everyone else, including later offsets of its partition, and its batch-mates at the API: not held back by it
    first = replies.wait_replies(600, timeout=30, workers=[worker])
    assert slow.id not in {r.reply_to_id for r in first}
    replied = 'beacon_worker_messages_total{outcome="replied",reason=""}'
    wait_until(lambda: worker.metric(replied) == 600, 30, "the worker to settle the 600 others")
    # A marker in another partition, produced after the 600 were settled: once its offset is committed, the
    # committer has had its chance to commit past the slow message with everything behind it finished.
    marker_partition, marker_offset = produce_marker(topics, codec, avoid=partition)
    wait_until(lambda: committed_offsets(topics.settings, topics.group)[marker_partition] > marker_offset, 30,
               "the marker's offset to be committed")
    assert committed_offsets(topics.settings, topics.group)[partition] <= offset
    assert slow.id not in {r.reply_to_id for r in replies.unique_replies()}

    wait_until(lambda: replies.answered() > 0 and slow.id in {r.reply_to_id for r in replies.replies}, 30,
               "the slow message's reply")
    wait_until(lambda: all_committed(topics.settings, topics.group), 30,
               "everything committed once the slow message is done")


def produce_marker(topics: Topics, codec: MessageCodec, avoid: int) -> tuple[int, int]:
    """Produce one message landing in a partition other than ``avoid``; its partition and offset."""
    for n in range(100):
        marker = BeaconMessage.inbound_text(channel="whatsapp", account="100", user_id=f"marker{n}", text="marker",
                                            channel_message_id=f"wamid.marker{n}")
        produce(topics.settings, [marker], codec)
        partition, offset = find_record(topics.settings, marker.user_key.encode())
        if partition != avoid:
            return partition, offset
    raise AssertionError(f"every marker key landed in partition {avoid}")


def test_faust_command_line_runs_the_same_worker(
    topics: Topics, codec: MessageCodec, start_stub: Callable[..., StubApi], start_worker: Callable[..., Worker],
    replies: Collector,
) -> None:
    stub = start_stub()
    worker = start_worker(stub.url, command=[FAUST, "-A", "beacon.streams", "worker", "-l", "info"])
    produce(topics.settings, conversation(50, 3, "f"), codec)

    got = replies.wait_replies(150, timeout=60, workers=[worker])

    assert_in_order(got, 50, 3)
    assert worker.metric('beacon_worker_messages_total{outcome="replied",reason=""}') == 150
