"""What the bridge puts in a NostrMQ payload: a BeaconMessage as JSON, or the acknowledgement of one.

A message: ``{"beacon_bridge": 1, "type": "message", "topic": "in" | "out", "message": {...}}``,
where ``message`` is the BeaconMessage's JSON (its pydantic fields). JSON rather than the Avro
bytes: a Confluent-framed record names its schema by an id that only the sender's registry knows;
the receiving deployment has its own registry, so it validates the JSON into a BeaconMessage and
encodes it with its own schema id. An acknowledgement: ``{"beacon_bridge": 1, "type": "ack", "ids": [...]}``
(several at once when messages arrive faster than one acknowledgement event per message goes out).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import ValidationError

from beacon.messages import BeaconMessage

VERSION = 1
Topic = Literal["in", "out"]


@dataclass(frozen=True)
class Carried:
    """A BeaconMessage for the receiver's ``bm_in`` (topic "in") or ``bm_out`` (topic "out")."""

    topic: Topic
    message: BeaconMessage


#: Ids per acknowledgement event (an event stays far below relays' size limits).
MAX_ACK_IDS = 200


@dataclass(frozen=True)
class Ack:
    """The receiver's broker acknowledged the messages with these ids."""

    ids: tuple[str, ...]


def message_payload(topic: Topic, message: BeaconMessage) -> dict[str, Any]:
    return {"beacon_bridge": VERSION, "type": "message", "topic": topic, "message": message.model_dump(mode="json")}


def ack_payload(message_ids: list[str]) -> dict[str, Any]:
    return {"beacon_bridge": VERSION, "type": "ack", "ids": message_ids}


def parse(payload: Any) -> Carried | Ack:
    """The bridge payload in a NostrMQ payload; ValueError says what is wrong with it."""
    if not isinstance(payload, dict) or payload.get("beacon_bridge") != VERSION:
        raise ValueError(f"not a bridge payload of version {VERSION}")
    kind = payload.get("type")
    if kind == "ack":
        ids = payload.get("ids")
        if not isinstance(ids, list) or not ids or not all(isinstance(i, str) and i for i in ids):
            raise ValueError("an ack needs a non-empty list of string ids")
        return Ack(tuple(ids))
    if kind == "message":
        topic = payload.get("topic")
        if topic not in ("in", "out"):
            raise ValueError(f"topic {topic!r} is neither 'in' nor 'out'")
        try:
            message = BeaconMessage.model_validate(payload.get("message"))
        except ValidationError as exc:
            raise ValueError(f"message is not a BeaconMessage: {exc.error_count()} error(s), first: "
                             f"{exc.errors()[0]['loc']} {exc.errors()[0]['msg']}") from exc
        return Carried(topic, message)
    raise ValueError(f"unknown bridge payload type {kind!r}")
