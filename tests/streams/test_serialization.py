"""The Faust codec for BeaconMessages: Confluent-framed Avro under the topic's subject."""

from __future__ import annotations

from faust.serializers import codecs

from beacon.codec import get_codec
from beacon.config import Settings
from beacon.messages import BeaconMessage
from beacon.streams.serialization import codec_name, register_codecs


def test_registered_codec_round_trips_a_message_in_the_wire_format(registry_settings: Settings) -> None:
    made = register_codecs(registry_settings)
    msg = BeaconMessage.inbound_text(channel="whatsapp", account="1", user_id="2", text="hi", channel_message_id="w")

    data = codecs.dumps(codec_name(registry_settings.topic_out), msg)

    assert data[0] == 0  # Confluent magic byte
    assert get_codec(registry_settings).decode(data, topic=registry_settings.topic_out) == msg
    assert codecs.loads(codec_name(registry_settings.topic_out), data) == msg
    assert set(made) == {codec_name(registry_settings.topic_in), codec_name(registry_settings.topic_out)}
