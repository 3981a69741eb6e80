"""Random bytes on a real bm_in, in front of a real worker (hypothesis): every record that does not
decode is dead-lettered with its reason, and the worker keeps going."""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest
from hypothesis import example, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from beacon.codec import MessageCodec
from beacon.errors import BadMessageError
from beacon.kafka import make_producer
from beacon.messages import BeaconMessage
from tests.streams.harness import Collector, StubApi, Topics, Worker, wait_until

#: Batches hypothesis generates (each of 1-12 records); raise it for a longer run.
EXAMPLES = int(os.environ.get("BEACON_TEST_FUZZ_EXAMPLES", "30"))


def payloads(valid: bytes) -> st.SearchStrategy[bytes]:
    """Random bytes; a valid record truncated, with one byte changed, or with a random body after its header."""
    last = len(valid) - 1

    def flip(at: int, mask: int) -> bytes:
        return valid[:at] + bytes([valid[at] ^ mask]) + valid[at + 1:]

    return st.one_of(
        st.binary(max_size=512),
        st.integers(0, last).map(lambda n: valid[:n]),
        st.builds(flip, st.integers(0, last), st.integers(1, 255)),
        st.binary(max_size=256).map(lambda body: valid[:5] + body),
    )


def decodes(codec: MessageCodec, payload: bytes, topic: str) -> BeaconMessage | None:
    try:
        return codec.decode(payload, topic=topic)
    except BadMessageError:
        return None


@pytest.mark.slow
def test_random_bytes_on_bm_in_are_dead_lettered_with_their_reason_and_the_worker_keeps_going(
    topics: Topics, codec: MessageCodec, start_stub: Callable[..., StubApi], start_worker: Callable[..., Worker],
    replies: Collector, dead_letters: Collector,
) -> None:
    topic = topics.settings.topics.inbound
    stub = start_stub()
    worker = start_worker(stub.url)
    worker.wait_assigned()
    valid = codec.encode(BeaconMessage.inbound_text(channel="whatsapp", account="100", user_id="v", text="hello",
                                                    channel_message_id="wamid.v.0"), topic)
    # Found by this test: a record that decodes to an id with a control character once hung its user forever
    # (the id cannot be an HTTP header, and the error never reached the message).
    control_id = codec.encode(BeaconMessage.inbound_text(channel="whatsapp", account="100", user_id="c", text="hi",
                                                         channel_message_id="wamid.c.0").model_copy(
        update={"id": "5e4fb8a5-a7a0-c681-578b-d97\x06e944d4aa"}), topic)
    producer = make_producer(topics.settings)
    cases: list[bytes] = []

    @hypothesis_settings(max_examples=EXAMPLES, deadline=None, database=None)
    @given(st.lists(payloads(valid), min_size=1, max_size=12))
    @example([control_id])
    def each_record_is_settled(batch: list[bytes]) -> None:
        expected: dict[bytes, tuple[bytes, BeaconMessage | None]] = {}
        for payload in batch:
            key = f"fuzz:{len(cases)}".encode()
            cases.append(payload)
            producer.produce(topic, payload, key=key)
            expected[key] = (payload, decodes(codec, payload, topic))
        assert producer.flush(10) == 0

        def settled() -> bool:
            dead_letters.poll(0.1)
            replies.poll(0.1)
            dead = {key for key, _, _ in dead_letters.dead}
            answered = {r.reply_to_id for r in replies.replies}
            return all(key in dead or (msg is not None and msg.id in answered) for key, (_, msg) in expected.items())

        wait_until(settled, 30, f"the worker to settle {len(batch)} fuzzed record(s) (log: {worker.log_path})",
                   interval=0)
        for dead_key, value, info in dead_letters.dead:
            if dead_key is None or dead_key not in expected:
                continue
            payload, msg = expected[dead_key]
            assert value == payload
            assert info is not None and info.topic == topic and info.offset >= 0 and info.error_text
            if msg is None:  # not decodable here either: the worker must say why
                assert info.error_class == "BadMessageError", info

    each_record_is_settled()

    after = BeaconMessage.inbound_text(channel="whatsapp", account="100", user_id="after", text="still there?",
                                       channel_message_id="wamid.after.0")
    producer.produce(topic, codec.encode(after, topic), key=after.user_key)
    assert producer.flush(10) == 0
    wait_until(lambda: replies.answered() > 0 and after.id in {r.reply_to_id for r in replies.replies}, 30,
               "the valid message after the fuzzed ones to be answered")
    undecodable = sum(1 for p in cases if decodes(codec, p, topic) is None)
    print(f"fuzzed {len(cases)} records on bm_in ({undecodable} undecodable, all dead-lettered with the reason)")
    assert worker.proc is not None and worker.proc.poll() is None
