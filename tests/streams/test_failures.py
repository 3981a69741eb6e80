"""Failures: retries with backoff, dead letters with reasons, outages waited out without loss."""

from __future__ import annotations

import random
import string
from collections import defaultdict
from collections.abc import Callable

import pytest
from confluent_kafka.admin import (  # type: ignore[attr-defined]  # documented names, not in its __all__
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ResourceType,
)

from beacon.codec import MessageCodec
from beacon.dlq import DeadLetterInfo
from beacon.kafka import make_admin
from beacon.messages import BeaconMessage
from tests.conftest import TEST_REGISTRY_PORT
from tests.streams.harness import (
    Collector,
    StubApi,
    TcpProxy,
    Topics,
    Worker,
    all_committed,
    committed_and_end,
    produce,
    produce_raw,
    wait_until,
)
from tests.streams.test_order import assert_in_order, conversation

BAD_BYTES = b"\x01 this is not Confluent-framed Avro"
FAST_RETRIES = {"worker_retry_max_attempts": "3", "worker_retry_base_delay": "0.05",
                "worker_retry_max_delay": "0.2", "worker_api_timeout": "1"}


def text(user: str, n: int, body: str) -> BeaconMessage:
    return BeaconMessage.inbound_text(channel="whatsapp", account="100", user_id=user, text=body,
                                      channel_message_id=f"wamid.{user}.{n}")


def texts_by_user(replies: list[BeaconMessage]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = defaultdict(list)
    for r in replies:
        out[r.user_id].append(r.text or "")
    return out


def test_poison_rejected_slow_and_undecodable_messages_are_dead_lettered_and_block_no_one(
    topics: Topics, codec: MessageCodec, start_stub: Callable[..., StubApi], start_worker: Callable[..., Worker],
    replies: Collector, dead_letters: Collector,
) -> None:
    stub = start_stub()
    worker = start_worker(stub.url, **FAST_RETRIES)
    status = BeaconMessage.status_update(channel="whatsapp", account="100", user_id="s", channel_message_id="w.1",
                                         status="delivered")
    special = [
        text("p", 0, "before poison"), text("p", 1, "poison pill"), text("p", 2, "after poison"),
        text("r", 0, "reject this"), text("r", 1, "after reject"),
        text("f", 0, "fail:2 flaky"), text("f", 1, "after flaky"),
        text("t", 0, "sleep:3 too slow"), text("t", 1, "after slow"),
        status,
    ]
    produce_raw(topics.settings, b"whatsapp:100:bad", BAD_BYTES)
    produce(topics.settings, special + conversation(50, 5, "ok"), codec)

    got = replies.wait_replies(250 + 6, timeout=60, workers=[worker])
    dead_letters.wait_dead(4, timeout=30)

    by_user = texts_by_user(got)
    assert by_user.pop("p") == ["You said: before poison", "You said: after poison"]
    assert by_user.pop("r") == ["You said: after reject"]
    assert by_user.pop("f") == ["You said: fail:2 flaky", "You said: after flaky"]
    assert by_user.pop("t") == ["You said: after slow"]
    assert "s" not in by_user  # statuses go to the API and produce no reply
    assert_in_order([r for r in got if r.user_id.startswith("ok")], 50, 5)

    infos = [info for _, _, info in dead_letters.dead]
    assert all(info is not None and info.origin == "worker" and info.topic == topics.settings.topics.inbound
               for info in infos)
    by_class: dict[str, list[tuple[bytes | None, bytes | None, DeadLetterInfo]]] = defaultdict(list)
    for key, value, info in dead_letters.dead:
        assert info is not None
        by_class[info.error_class].append((key, value, info))
    assert set(by_class) == {"ApiError", "BadMessageError"}, by_class
    ((bad_key, bad_value, bad_info),) = by_class["BadMessageError"]
    assert bad_value == BAD_BYTES and bad_key == b"whatsapp:100:bad"
    assert bad_info.offset >= 0 and bad_info.partition >= 0 and "magic" in bad_info.error_text
    api_errors = sorted((i.attempts, i.error_text) for _, _, i in by_class["ApiError"])
    assert [a for a, _ in api_errors] == [1, 3, 3]
    assert "422" in api_errors[0][1]
    assert any("500" in t for _, t in api_errors[1:]) and any("did not answer" in t for _, t in api_errors[1:])

    wait_until(lambda: all_committed(topics.settings, topics.group), 30,
               "offsets committed past the dead-lettered messages")
    metrics = worker.metrics()
    assert metrics['beacon_worker_messages_total{outcome="dead_lettered",reason="bad_message"}'] == 1
    assert metrics['beacon_worker_messages_total{outcome="dead_lettered",reason="rejected"}'] == 1
    assert metrics['beacon_worker_messages_total{outcome="dead_lettered",reason="exhausted"}'] == 2
    # poison and slow: 2 retries each while the API answered /readyz; flaky's 503s were outages, not retries
    assert metrics["beacon_worker_api_retries_total"] >= 4


def test_api_down_then_back_loses_nothing(
    topics: Topics, codec: MessageCodec, start_stub: Callable[..., StubApi], start_worker: Callable[..., Worker],
    replies: Collector, dead_letters: Collector,
) -> None:
    stub = start_stub(run=False)
    worker = start_worker(stub.url, **FAST_RETRIES)
    produce(topics.settings, conversation(100, 3, "d"), codec)
    wait_until(lambda: worker.metric('beacon_worker_dependency_up{dependency="api"}') == 0, 60,
               "the worker to see the API unreachable")
    stub.start()

    got = replies.wait_replies(300, timeout=60, workers=[worker])

    assert_in_order(got, 100, 3)
    wait_until(lambda: all_committed(topics.settings, topics.group), 30, "every message settled and committed")
    dead_letters.catch_up()
    assert dead_letters.dead == []


def test_registry_outage_is_waited_out_not_dead_lettered(
    topics: Topics, codec: MessageCodec, start_stub: Callable[..., StubApi], start_worker: Callable[..., Worker],
    replies: Collector, dead_letters: Collector,
) -> None:
    stub = start_stub()
    proxy = TcpProxy(TEST_REGISTRY_PORT)
    worker = start_worker(stub.url, schema_registry_url=f"http://127.0.0.1:{proxy.port}/apis/ccompat/v7")
    produce(topics.settings, conversation(20, 2, "g"), codec)
    wait_until(lambda: "registry" in worker.log().lower() and "waits and retries" in worker.log(), 60,
               "the worker to report the registry unreachable")
    # While it is away: nothing answered, nothing dead-lettered, nothing committed (read to the ends to see it).
    replies.catch_up()
    dead_letters.catch_up()
    assert replies.replies == [] and dead_letters.dead == []
    assert committed_and_end(topics.settings, topics.group)[0] == 0
    assert worker.metric('beacon_worker_dependency_up{dependency="registry"}') == 0
    proxy.start()
    try:
        got = replies.wait_replies(40, timeout=60, workers=[worker])
    finally:
        proxy.stop()

    assert_in_order(got, 20, 2)
    wait_until(lambda: all_committed(topics.settings, topics.group), 30, "every message settled and committed")
    dead_letters.catch_up()
    assert dead_letters.dead == []
    metrics = worker.metrics()
    assert metrics['beacon_worker_dependency_up{dependency="registry"}'] == 1
    assert metrics['beacon_worker_dependency_outages_total{dependency="registry"}'] >= 1
    assert "schema registry is back after" in worker.log()


@pytest.mark.slow
def test_replies_the_broker_refuses_every_time_dead_letter_their_message_instead_of_blocking_its_user(
    topics: Topics, codec: MessageCodec, start_stub: Callable[..., StubApi], start_worker: Callable[..., Worker],
    replies: Collector, dead_letters: Collector,
) -> None:
    """bm_out takes records of at most 2000 bytes: the reply to a long text is refused with MSG_SIZE_TOO_LARGE,
    a permanent Kafka error (not retried for ever): its message is dead-lettered and the user's next one answered."""
    settings = topics.settings
    limit = ConfigResource(ResourceType.TOPIC, settings.topics.outbound, incremental_configs=[
        ConfigEntry("max.message.bytes", "2000", incremental_operation=AlterConfigOpType.SET)])
    admin = make_admin(settings)  # held: the futures fail when the client is destroyed
    for future in admin.incremental_alter_configs([limit]).values():
        future.result(timeout=30)
    worker = start_worker(start_stub().url, **FAST_RETRIES)
    rng = random.Random(15)
    long_text = "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(3500))
    produce(settings, [text("big", 0, long_text), text("big", 1, "after the long one")], codec)

    got = replies.wait_replies(1, timeout=60, workers=[worker])
    dead_letters.wait_dead(1, timeout=30)

    assert [r.text for r in got] == ["You said: after the long one"]
    ((_, _, info),) = dead_letters.dead
    assert info is not None and info.error_class == "KafkaError" and info.offset == 0, info
    assert "MSG_SIZE_TOO_LARGE" in info.error_text or "too large" in info.error_text.lower(), info.error_text
    assert worker.metric('beacon_worker_messages_total{outcome="dead_lettered",reason="replies_refused"}') == 1


@pytest.mark.slow
def test_a_coalesced_groups_replies_the_broker_refuses_dead_letter_its_messages_and_the_user_goes_on(
    topics: Topics, codec: MessageCodec, start_stub: Callable[..., StubApi], start_worker: Callable[..., Worker],
    replies: Collector, dead_letters: Collector,
) -> None:
    """Three texts of one user coalesced into one turn whose answer outgrows bm_out's 2000-byte records: the
    three are dead-lettered (not retried for ever, not blocking the user) and the user's next message answered."""
    settings = topics.settings
    limit = ConfigResource(ResourceType.TOPIC, settings.topics.outbound, incremental_configs=[
        ConfigEntry("max.message.bytes", "2000", incremental_operation=AlterConfigOpType.SET)])
    admin = make_admin(settings)  # held: the futures fail when the client is destroyed
    for future in admin.incremental_alter_configs([limit]).values():
        future.result(timeout=30)
    worker = start_worker(start_stub().url, coalesce_window_ms="1000", **FAST_RETRIES)
    rng = random.Random(16)
    texts = ["".join(rng.choice(string.ascii_letters) for _ in range(900)) for _ in range(3)]
    produce(settings, [text("burst", i, t) for i, t in enumerate(texts)], codec)
    dead_letters.wait_dead(3, timeout=60)
    produce(settings, [text("burst", 3, "after the burst")], codec)

    got = replies.wait_replies(1, timeout=60, workers=[worker])
    assert [r.text for r in got] == ["You said: after the burst"]
    assert sorted(info.offset for _, _, info in dead_letters.dead if info is not None) == [0, 1, 2]
    assert worker.metric('beacon_worker_messages_total{outcome="dead_lettered",reason="replies_refused"}') == 3
