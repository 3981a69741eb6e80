"""Events the reference NostrMQ library (humansinstitute/nostrMQ 0.4.0, Node) produced, recorded once
through a real relay with ``tests/nostr/test_reference.py``'s driver (its output, not its code), so every
run checks that Beacon verifies and opens what the reference sends even where the reference itself
cannot be built. The live two-way test is ``test_reference.py``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from beacon.errors import BadEventError
from beacon.nostr import wire
from beacon.nostr.event import Event
from beacon.nostr.keys import NostrKey

VECTORS: list[dict[str, Any]] = json.loads((Path(__file__).parent / "vectors" / "reference-0.4.0.json").read_text())


@pytest.mark.parametrize("vector", VECTORS, ids=[v["payload"]["text"][:12] for v in VECTORS])
def test_beacon_opens_an_event_the_reference_sent(vector: dict[str, Any]) -> None:
    event = Event.from_json(vector["event"])
    assert event.verify()
    opened = wire.open_event(NostrKey.parse(vector["recipient_secret_hex"]), event, peers={vector["sender_pubkey"]})
    assert opened.payload == vector["payload"]
    assert opened.sender == opened.response == vector["sender_pubkey"]


@pytest.mark.parametrize("vector", VECTORS[:1])
def test_a_reference_event_opened_with_another_key_or_altered_is_refused(vector: dict[str, Any]) -> None:
    event = Event.from_json(vector["event"])
    with pytest.raises(BadEventError):
        wire.open_event(NostrKey.generate(), event, peers={vector["sender_pubkey"]})
    tampered = Event.from_json({**vector["event"], "content": vector["event"]["content"].replace("?iv=", "A?iv=")})
    with pytest.raises(BadEventError):
        wire.open_event(NostrKey.parse(vector["recipient_secret_hex"]), tampered, peers={vector["sender_pubkey"]})
