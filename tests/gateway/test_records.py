"""Which produce failures are "the record is too large": by librdkafka's code, not by the text."""

from __future__ import annotations

from confluent_kafka import KafkaError as CKafkaError

from beacon.errors import KafkaError
from beacon.gateway.records import is_too_large


def test_a_code_saying_too_large_is_too_large_whatever_the_text() -> None:
    assert is_too_large(KafkaError("the broker refused the record", code=CKafkaError.MSG_SIZE_TOO_LARGE))
    assert is_too_large(KafkaError("refused", code=CKafkaError.RECORD_LIST_TOO_LARGE))


def test_another_code_is_not_too_large_even_when_a_topic_name_says_so() -> None:
    # a timeout on a topic whose name holds a marker: an outage to wait out, not a record to cut down
    timeout = KafkaError("broker did not acknowledge a message for message_too_large_alerts: Local: Message timed out",
                         code=CKafkaError._MSG_TIMED_OUT)
    assert not is_too_large(timeout)


def test_an_error_without_a_code_is_judged_by_its_text() -> None:
    assert is_too_large(BufferError("Local: Message size too large"))
    assert not is_too_large(KafkaError("producer queue full while producing to bm_in: Local: Queue full"))
