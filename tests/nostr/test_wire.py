"""The NostrMQ wire format: keys (NIP-19 vectors), NIP-01 ids and signatures, NIP-04, kind 30072."""

from __future__ import annotations

import dataclasses
import json

import pytest

from beacon.errors import BadEventError
from beacon.nostr import nip04, wire
from beacon.nostr.event import Event, UnsignedEvent
from beacon.nostr.keys import NostrKey, parse_public_key
from beacon.nostr.pow import leading_zero_bits

# NIP-19's own examples.
NSEC = "nsec1vl029mgpspedva04g90vltkh6fvh240zqtv9k0t9af8935ke9laqsnlfe5"
NSEC_HEX = "67dea2ed018072d675f5415ecfaed7d2597555e202d85b3d65ea4e58d2d92ffa"
NPUB = "npub180cvv07tjdrrgpa0j7j7tmnyl2yr6yr7l8j4s3evf6u64th6gkwsyjh6w6"
NPUB_HEX = "3bf0c63fcb93463407af97a5e5ee64fa883d107ef9e558472c4eb9aaaefa459d"


def test_keys_parse_hex_and_nip19_forms() -> None:
    key = NostrKey.parse(NSEC)
    assert key.secret.hex() == NSEC_HEX
    assert NostrKey.parse(NSEC_HEX).nsec == NSEC
    assert parse_public_key(NPUB) == NPUB_HEX
    assert parse_public_key(NPUB_HEX.upper()) == NPUB_HEX
    fresh = NostrKey.generate()
    assert parse_public_key(fresh.npub) == fresh.pubkey
    assert fresh.secret.hex() not in repr(fresh)
    for bad in ("nsec1vl029mgpspedva04g90vltkh6fvh240zqtv9k0t9af8935ke9laqsnlfe6", "abc", NPUB):
        with pytest.raises(ValueError):
            NostrKey.parse(bad)


def test_nip04_round_trip_and_wrong_key() -> None:
    alice, bob, eve = NostrKey.generate(), NostrKey.generate(), NostrKey.generate()
    text = "héllo 👋 " * 10
    content = nip04.encrypt(alice, bob.pubkey, text)
    assert "?iv=" in content
    assert nip04.decrypt(bob, alice.pubkey, content) == text
    assert nip04.decrypt(alice, bob.pubkey, content) == text  # the shared secret is symmetric
    with pytest.raises(ValueError):
        nip04.decrypt(eve, alice.pubkey, content)
    with pytest.raises(ValueError):
        nip04.decrypt(bob, alice.pubkey, "not base64?iv=zzz")


def test_a_message_carries_the_reference_format() -> None:
    alice, bob, other = NostrKey.generate(), NostrKey.generate(), NostrKey.generate()
    event = wire.build(alice, bob.pubkey, {"text": "ünïcode"}, response=other.pubkey, pow_bits=6)
    assert event.kind == 30072 and event.verify()
    assert event.tag("p") == bob.pubkey and event.tag("response") == other.pubkey and event.tag("d")
    assert leading_zero_bits(event.id) >= 6 and event.tag("nonce") is not None
    body = json.loads(nip04.decrypt(bob, alice.pubkey, event.content))
    assert body == {"target": bob.pubkey, "response": other.pubkey, "payload": {"text": "ünïcode"}}
    opened = wire.open_event(bob, event)
    assert (opened.sender, opened.response, opened.payload) == (alice.pubkey, other.pubkey, {"text": "ünïcode"})
    plain = wire.build(alice, bob.pubkey, 1)
    assert plain.tag("response") is None and plain.tag("nonce") is None and plain.tag("expiration") is None
    expiring = wire.build(alice, bob.pubkey, 1, expires_in=600)
    assert expiring.tag("expiration") == str(expiring.created_at + 600) and expiring.verify()
    assert plain.tag("d") != event.tag("d")  # d is unique per message: kind 30072 is replaceable per d


def test_opening_refuses_forged_foreign_and_garbled_events() -> None:
    alice, bob, eve = NostrKey.generate(), NostrKey.generate(), NostrKey.generate()
    good = wire.build(alice, bob.pubkey, {"n": 1})

    def reason(event: Event, **kwargs: object) -> str:
        with pytest.raises(BadEventError) as info:
            wire.open_event(bob, event, **kwargs)  # type: ignore[arg-type]
        return info.value.reason

    assert reason(dataclasses.replace(good, content=good.content[::-1])) == "signature"
    assert reason(dataclasses.replace(good, sig="00" * 64)) == "signature"
    assert reason(good, peers={eve.pubkey}) == "foreign"
    assert reason(wire.build(alice, eve.pubkey, {"n": 1})) == "target"
    wrong_key = UnsignedEvent(30072, nip04.encrypt(alice, eve.pubkey, "{}"), [["p", bob.pubkey]]).sign(alice)
    assert reason(wrong_key) == "undecryptable"
    not_json = UnsignedEvent(30072, nip04.encrypt(alice, bob.pubkey, "{nope"), [["p", bob.pubkey]]).sign(alice)
    assert reason(not_json) == "format"
    no_payload = json.dumps({"target": bob.pubkey, "response": alice.pubkey})
    missing = UnsignedEvent(30072, nip04.encrypt(alice, bob.pubkey, no_payload), [["p", bob.pubkey]]).sign(alice)
    assert reason(missing) == "format"
