"""API outages are waited out, never dead-lettered; only a message that fails on its own is.

The retry budget here is tiny (2 attempts, 0.1 s apart), so any outage is many times longer than
it: a worker that spent the budget during an outage would dead-letter everything in flight.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from beacon.codec import MessageCodec
from beacon.messages import BeaconMessage
from tests.streams.harness import (
    Collector,
    RealApi,
    SteadyProducer,
    StubApi,
    Topics,
    Worker,
    all_committed,
    produce,
    wait_until,
)
from tests.streams.test_order import assert_in_order, conversation

SMALL_BUDGET = {"worker_retry_max_attempts": "2", "worker_retry_base_delay": "0.1", "worker_retry_max_delay": "0.2",
                "worker_api_probe_max_delay": "1", "worker_api_timeout": "5"}
API_UP = 'beacon_worker_dependency_up{dependency="api"}'
API_OUTAGES = 'beacon_worker_dependency_outages_total{dependency="api"}'
API_DOWN_SECONDS = 'beacon_worker_dependency_down_seconds{dependency="api"}'
#: How long the API stays stopped in the outage test (run it once with several minutes).
OUTAGE_SECONDS = float(os.environ.get("BEACON_TEST_OUTAGE_SECONDS", "15"))


def set_stub_outage(stub: StubApi, down: bool) -> None:
    httpx.post(stub.url + "/_stub/outage", json={"down": down}, timeout=5).raise_for_status()


def assert_settled_without_dead_letters(topics: Topics, dead_letters: Collector) -> None:
    """Every record of bm_in settled (offsets committed to the end), and none of them on bm_dlq."""
    wait_until(lambda: all_committed(topics.settings, topics.group), 60, "offsets committed to the end of bm_in")
    dead_letters.catch_up()
    assert dead_letters.dead == []


def assert_each_answered_once_in_order(sent: list[BeaconMessage], replies: Collector) -> None:
    """One reply per message (by reply id; the gateway drops repeats of an id), in order per user."""
    got = replies.unique_replies()
    assert Counter(r.reply_to_id for r in got) == Counter(m.id for m in sent)
    by_user: dict[str, list[str]] = {}
    for r in got:
        by_user.setdefault(r.user_id, []).append(r.text or "")
    expected: dict[str, list[str]] = {}
    for m in sent:
        expected.setdefault(m.user_id, []).append(f"You said: {m.text}")
    assert by_user == expected


@pytest.mark.slow
def test_api_stopped_far_longer_than_the_retry_budget_loses_and_dead_letters_nothing(
    topics: Topics, codec: MessageCodec, start_worker: Callable[..., Worker], replies: Collector,
    dead_letters: Collector, tmp_path: Path,
) -> None:
    api = RealApi(topics.settings, tmp_path).start()
    try:
        worker = start_worker(api.url, **SMALL_BUDGET)
        worker.wait_assigned()
        load = SteadyProducer(topics.settings, codec, users=60, prefix="o", per_second=40).start()
        wait_until(lambda: replies.answered() >= 40, 60, "the first replies")

        api.stop()  # messages of many users in flight, more arriving
        wait_until(lambda: worker.metric(API_UP) == 0, 30, f"the worker to see the API down (log: {worker.log_path})")
        time.sleep(OUTAGE_SECONDS)  # the outage itself: every message produced meanwhile must wait
        assert worker.metric(API_DOWN_SECONDS) > 0
        api.start()

        wait_until(lambda: worker.metric(API_UP) == 1, 60, "the worker to see the API back")
        sent = load.stop()
        replies.wait_replies(len(sent), timeout=120, workers=[worker])
        assert_settled_without_dead_letters(topics, dead_letters)
        replies.catch_up()
        assert_each_answered_once_in_order(sent, replies)
        outages = worker.metric(API_OUTAGES)
        assert outages >= 1
        log = worker.log()
        assert log.count("API unreachable") == outages and log.count("API is back after") == outages
        print(f"outage {OUTAGE_SECONDS:.0f}s: {len(sent)} messages, {len(replies.replies)} replies on bm_out "
              f"({len(replies.replies) - len(sent)} repeated ids), {outages:.0f} outage(s), 0 dead letters")
    finally:
        api.stop()


def test_a_message_the_api_fails_while_answering_others_is_dead_lettered_after_its_attempts(
    topics: Topics, codec: MessageCodec, start_stub: Callable[..., StubApi], start_worker: Callable[..., Worker],
    replies: Collector, dead_letters: Collector,
) -> None:
    stub = start_stub()
    worker = start_worker(stub.url, **SMALL_BUDGET)
    poison = BeaconMessage.inbound_text(channel="whatsapp", account="100", user_id="p", text="poison pill",
                                        channel_message_id="wamid.p.0")
    produce(topics.settings, [poison, *conversation(30, 3, "k")], codec)

    got = replies.wait_replies(90, timeout=60, workers=[worker])
    dead_letters.wait_dead(1, timeout=30)

    assert_in_order(got, 30, 3)
    ((key, _, info),) = dead_letters.dead
    assert key == poison.user_key.encode()
    assert info is not None and info.error_class == "ApiError" and "500" in info.error_text
    assert info.attempts == 2
    metrics = worker.metrics()
    assert metrics[API_OUTAGES] == 0 and metrics[API_UP] == 1  # the API answered /readyz: the message's own fault
    assert stub.stats()["ready_probes"] >= 1


def test_api_answering_503_and_not_ready_is_an_outage_not_a_dead_letter(
    topics: Topics, codec: MessageCodec, start_stub: Callable[..., StubApi], start_worker: Callable[..., Worker],
    replies: Collector, dead_letters: Collector,
) -> None:
    stub = start_stub()
    set_stub_outage(stub, True)
    worker = start_worker(stub.url, **SMALL_BUDGET)
    sent = conversation(30, 3, "n")
    produce(topics.settings, sent, codec)

    wait_until(lambda: worker.metric(API_UP) == 0, 60, "the worker to see the API down")
    # Ten probes at up to 1 s apart: many times the 2-attempt budget (0.1 s), and the API was called only
    # for the messages in flight when it went down, not again and again for each.
    wait_until(lambda: stub.stats()["ready_probes"] >= 10, 60, "the worker to keep probing /readyz")
    calls_while_down = stub.stats()["calls_while_down"]
    assert calls_while_down <= len(sent)
    set_stub_outage(stub, False)

    replies.wait_replies(len(sent), timeout=60, workers=[worker])
    assert_settled_without_dead_letters(topics, dead_letters)
    replies.catch_up()
    assert_each_answered_once_in_order(sent, replies)
    assert worker.metric(API_UP) == 1 and worker.metric(API_OUTAGES) >= 1


@pytest.mark.slow
def test_a_worker_joining_during_an_outage_loses_nothing(
    topics: Topics, codec: MessageCodec, start_stub: Callable[..., StubApi], start_worker: Callable[..., Worker],
    replies: Collector, dead_letters: Collector,
) -> None:
    stub = start_stub()
    set_stub_outage(stub, True)
    first = start_worker(stub.url, **SMALL_BUDGET)
    sent = conversation(40, 3, "j")
    produce(topics.settings, sent, codec)
    wait_until(lambda: first.metric(API_UP) == 0, 60, "the first worker to see the API down")

    second = start_worker(stub.url, **SMALL_BUDGET)  # a rebalance while the first one's work is waiting
    second.wait_assigned()
    wait_until(lambda: first.metric("beacon_worker_assigned_partitions") < topics.settings.topics.partitions, 60,
               "the first worker to give up partitions")
    wait_until(lambda: second.metric(API_UP) == 0, 60, "the second worker to see the API down")
    set_stub_outage(stub, False)

    replies.wait_replies(len(sent), timeout=60, workers=[first, second])
    assert_settled_without_dead_letters(topics, dead_letters)
    replies.catch_up()
    assert_each_answered_once_in_order(sent, replies)
