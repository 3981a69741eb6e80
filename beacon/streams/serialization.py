"""A Faust codec for BeaconMessages in the Confluent wire format, backed by beacon.codec.

Faust codecs see bytes, not topics, so each instance is bound to one topic (its registry subject
``<topic>-value``). Registered as ``beacon-<topic>`` by :func:`register_codecs`; use it as the
``value_serializer`` of a Faust topic, e.g. ``app.topic(settings.topic_out,
value_serializer=f"beacon-{settings.topic_out}")``. The worker's own agent reads raw bytes and
decodes in the processor, so undecodable records are dead-lettered instead of skipped.
"""

from __future__ import annotations

from typing import Any

from faust.serializers import codecs

from beacon.codec import MessageCodec, get_codec
from beacon.config import Settings
from beacon.messages import BeaconMessage


class BeaconMessageCodec(codecs.Codec):
    """BeaconMessage <-> Confluent-framed Avro bytes for one topic."""

    def __init__(self, codec: MessageCodec, topic: str, **kwargs: Any) -> None:
        self.codec = codec
        self.topic = topic
        super().__init__(codec=codec, topic=topic, **kwargs)

    def _dumps(self, obj: Any) -> bytes:
        if isinstance(obj, dict):
            obj = BeaconMessage.model_validate(obj)
        return self.codec.encode(obj, self.topic)

    def _loads(self, s: bytes) -> BeaconMessage:
        return self.codec.decode(s, topic=self.topic)


def codec_name(topic: str) -> str:
    return f"beacon-{topic}"


def register_codecs(settings: Settings) -> dict[str, BeaconMessageCodec]:
    """Register one codec per Beacon topic (bm_in, bm_out) with Faust; returns them by name."""
    codec = get_codec(settings)
    made = {}
    for topic in (settings.topic_in, settings.topic_out):
        name = codec_name(topic)
        made[name] = BeaconMessageCodec(codec, topic)
        codecs.register(name, made[name])
    return made
