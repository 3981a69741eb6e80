"""Several workers: sharing partitions, a rebalance under load, SIGKILL and SIGTERM."""

from __future__ import annotations

import signal
from collections.abc import Callable

import pytest

from beacon.codec import MessageCodec
from tests.streams.harness import (
    Collector,
    StubApi,
    Topics,
    Worker,
    all_committed,
    committed_and_end,
    produce,
    wait_until,
)
from tests.streams.test_order import assert_in_order, conversation

REPLIED = 'beacon_worker_messages_total{outcome="replied",reason=""}'


@pytest.mark.slow
def test_second_worker_joins_under_load_then_first_is_killed_and_every_message_is_answered_once_by_id(
    topics: Topics, codec: MessageCodec, start_stub: Callable[..., StubApi], start_worker: Callable[..., Worker],
    replies: Collector,
) -> None:
    # Each user's messages take 6-18 s in sequence (0.1-0.3 s per API call): long enough for a
    # rebalance and a kill in the middle of the run on any machine.
    users, per_user = 200, 60
    total = users * per_user
    stub = start_stub(latency=(0.1, 0.3))
    first = start_worker(stub.url)
    first.wait_assigned()
    produce(topics.settings, conversation(users, per_user, "k"), codec)
    wait_until(lambda: first.metric(REPLIED) >= 400, 60, "the first worker to get going")

    second = start_worker(stub.url)  # joins under load: the first one's partitions are rebalanced
    wait_until(lambda: second.metric(REPLIED) > 0 and first.metric("beacon_worker_assigned_partitions") > 0
               and first.metric("beacon_worker_assigned_partitions") < topics.settings.topics.partitions
               and first.metric("beacon_worker_in_flight") > 0,
               60, "both workers to process messages of their own partitions, the first one busy")

    first.signal(signal.SIGKILL)
    first.wait(10)
    got = replies.wait_replies(total, timeout=120, workers=[second])

    assert len(got) == total  # unique by id: the API's idempotency gives repeats the same ids
    assert_in_order(got, users, per_user)
    assert len(replies.replies) >= total
    wait_until(lambda: all_committed(topics.settings, topics.group), 30,
               "the survivor to commit everything")


@pytest.mark.slow
def test_sigterm_finishes_in_flight_work_commits_and_exits(
    topics: Topics, codec: MessageCodec, start_stub: Callable[..., StubApi], start_worker: Callable[..., Worker],
    replies: Collector,
) -> None:
    stub = start_stub(latency=(1.0, 2.0))
    worker = start_worker(stub.url)
    worker.wait_assigned()
    produce(topics.settings, conversation(200, 1, "t"), codec)
    wait_until(lambda: worker.metric("beacon_worker_in_flight") == 200, 30, "200 messages in flight")

    worker.signal(signal.SIGTERM)
    code = worker.wait(30)

    assert code == 0, worker.log()[-3000:]
    assert "finishing 200 running message(s)" in worker.log()
    replies.poll(1.0)
    assert len(replies.unique_replies()) == 200
    committed, end = committed_and_end(topics.settings, topics.group)
    assert committed == end == 200
