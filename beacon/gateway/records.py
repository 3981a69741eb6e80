"""Records that must fit the broker: any channel's gateway produces messages whose content it does not
control (a user's 1.5 MB text, a Cloud API error text), and a record the broker refuses as too large
is refused every time. Such content is a permanent, per-message outcome, never a reason to retry.
"""

from __future__ import annotations

from confluent_kafka import KafkaError as _CKafkaError

from beacon.codec import MessageCodec
from beacon.errors import KafkaError
from beacon.messages import INBOUND, BeaconMessage, StatusError

#: Avro ``int`` (error codes) is 32-bit: a code outside it cannot be encoded.
AVRO_INT = range(-(2**31), 2**31)
#: What encoding a message the channel sent us may raise besides a registry outage (fastavro's own errors).
ENCODE_ERRORS = (ValueError, TypeError, OverflowError)
#: Texts kept in a cut-down message (error text, profile name, metadata values), in characters.
KEPT_CHARS = 1000
#: librdkafka's codes for a record larger than the client or the broker accepts.
TOO_LARGE_CODES = frozenset({_CKafkaError.MSG_SIZE_TOO_LARGE, _CKafkaError.RECORD_LIST_TOO_LARGE})
#: How a client or broker names a record that is too large in an error that carries no code (librdkafka:
#: "Message size too large"; the broker: RECORD_LIST_TOO_LARGE).
_TOO_LARGE_MARKERS = ("size too large", "msg_size_too_large", "record_list_too_large", "message_too_large")


def is_too_large(error: BaseException) -> bool:
    """Whether a produce failed because the record is larger than the broker or client accepts: by
    librdkafka's code when the error carries one, else by its text."""
    if isinstance(error, KafkaError) and error.code is not None:
        return error.code in TOO_LARGE_CODES
    text = str(error).lower()
    return any(marker in text for marker in _TOO_LARGE_MARKERS)


def without_content(msg: BeaconMessage, reason: str) -> BeaconMessage:
    """``msg`` reduced to what routes it (ids, user, kind, status), with ``reason`` as its error.

    An inbound message becomes ``unsupported`` with its original kind in ``raw_type``, so the
    business logic can answer (for example "that message is too long") instead of never hearing of it.
    """
    error = msg.error
    update: dict[str, object] = {
        "text": None, "media": None, "location": None, "reaction": None, "interactive_reply": None,
        "payload": None,
        "profile_name": msg.profile_name[:KEPT_CHARS] if msg.profile_name else None,
        "metadata": {k[:100]: v[:KEPT_CHARS] for k, v in list(msg.metadata.items())[:20]},
        "error": StatusError(
            code=error.code if error else None,
            title=(error.title or "too large")[:KEPT_CHARS] if error else "too large",
            message=reason[:KEPT_CHARS],
            details=error.details[:KEPT_CHARS] if error and error.details else None,
        ),
    }
    if msg.direction == INBOUND:
        update["kind"] = "unsupported"
        update["raw_type"] = (msg.raw_type or msg.kind)[:100]
    return msg.model_copy(update=update)


def encode_within(codec: MessageCodec, msg: BeaconMessage, topic: str, limit: int) -> tuple[bytes, BeaconMessage]:
    """``msg`` encoded for ``topic`` in at most ``limit`` bytes: as it is when it fits, else without its
    content (see ``without_content``). Returns the bytes and the message they encode."""
    value = codec.encode(msg, topic)
    if len(value) <= limit:
        return value, msg
    return shrink(codec, msg, topic, len(value))


def shrink(codec: MessageCodec, msg: BeaconMessage, topic: str, size: int) -> tuple[bytes, BeaconMessage]:
    """``msg`` without its content, encoded: for a record of ``size`` bytes that is too large."""
    small = without_content(msg, f"too large: the {msg.kind} content was not kept, it takes {size} bytes, more "
                                 "than a record may have")
    return codec.encode(small, topic), small
