"""Typing while a turn is processed: a worker whose API call outlasts BEACON_WORKER_TYPING_DELAY puts a
typing read receipt on bm_out ahead of the replies; a turn answered within the delay shows none."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from beacon.codec import MessageCodec
from beacon.messages import BeaconMessage
from tests.streams.harness import Collector, StubApi, Topics, Worker, produce, wait_until


def _wait_answer(replies: Collector, question: BeaconMessage, worker: Worker) -> list[BeaconMessage]:
    """Everything on bm_out up to the answer to ``question`` (a receipt would come before it: same partition)."""

    def answered() -> bool:
        replies.poll(0.3)
        assert worker.proc is not None and worker.proc.poll() is None, worker.log()[-3000:]
        return any(r.reply_to_id == question.id for r in replies.replies)

    wait_until(answered, 60, f"the answer to {question.id}")
    return replies.unique_replies()


def _question(user: str) -> BeaconMessage:
    return BeaconMessage.inbound_text(channel="whatsapp", account="100", user_id=user, text="a slow one",
                                      channel_message_id=f"wamid.{user}.1")


@pytest.mark.slow
def test_a_slow_turn_shows_typing_before_its_reply(
    topics: Topics, codec: MessageCodec, start_stub: Callable[..., StubApi], start_worker: Callable[..., Worker],
    replies: Collector,
) -> None:
    stub = start_stub(latency=(1.5, 1.5))
    worker = start_worker(stub.url, worker_typing_delay="0.3")
    question = _question("slow1")
    produce(topics.settings, [question], codec)

    [receipt, answer] = _wait_answer(replies, question, worker)  # one partition: the receipt went first
    assert receipt.kind == "read_receipt" and receipt.metadata == {"typing": "true", "typing_for": question.id}
    assert receipt.channel_message_id == "wamid.slow1.1" and receipt.user_key == question.user_key
    assert answer.text == "You said: a slow one" and answer.reply_to_id == question.id


@pytest.mark.slow
def test_a_turn_answered_within_the_delay_shows_no_typing(
    topics: Topics, codec: MessageCodec, start_stub: Callable[..., StubApi], start_worker: Callable[..., Worker],
    replies: Collector,
) -> None:
    stub = start_stub(latency=(0.3, 0.3))
    worker = start_worker(stub.url, worker_typing_delay="5")
    question = _question("quick1")
    produce(topics.settings, [question], codec)

    # A receipt would precede the reply in the user's partition: once the reply is read, all is read.
    assert [r.kind for r in _wait_answer(replies, question, worker)] == ["text"]
