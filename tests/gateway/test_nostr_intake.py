"""The NostrMQ gateway's intake over real signed and encrypted events (no relay needed: the relay only
carries them): what it takes becomes the sender's text message with an id derived from the event id,
and its question is recorded; the proof-of-work minimum, the allowlist, the payload format and the
per-sender rate each drop and count what they refuse."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from beacon.gateway.nostr.intake import Intake
from beacon.gateway.nostr.questions import Question, QuestionStore
from beacon.nostr import wire
from beacon.nostr.keys import NostrKey
from beacon.nostr.pow import leading_zero_bits
from tests.conftest import make_settings

BEACON = NostrKey.generate()


def _intake(tmp_path: Path, allowed: set[str] | None = None, **settings: Any) -> Intake:
    s = make_settings(data_dir=tmp_path, **settings)
    return Intake(s, BEACON, QuestionStore(tmp_path / "sent.db"), allowed)


def test_a_text_becomes_the_senders_message_with_an_id_from_the_event_and_its_question_recorded(
        tmp_path: Path) -> None:
    intake = _intake(tmp_path)
    user, other = NostrKey.generate(), NostrKey.generate()
    event = wire.build(user, BEACON.pubkey, {"text": "héllo"}, response=other.pubkey)
    msg = intake.take(event, "ws://relay")
    assert msg is not None and msg.text == "héllo" and msg.channel == "nostr"
    assert msg.user_key == f"nostr:{BEACON.pubkey}:{user.pubkey}"
    again = intake.take(event, "ws://other-relay")  # the same event from another relay: the same message id
    assert again is not None and again.id == msg.id
    assert intake.questions.get(msg.id) == Question(event.tag("d") or "", other.pubkey)


def test_proof_of_work_below_the_minimum_is_dropped(tmp_path: Path) -> None:
    intake = _intake(tmp_path, nostr_min_pow=8)
    user = NostrKey.generate()
    lazy = wire.build(user, BEACON.pubkey, {"text": "spam"})
    while leading_zero_bits(lazy.id) >= 8:  # 1 in 256 has the work by chance
        lazy = wire.build(user, BEACON.pubkey, {"text": "spam"})
    assert intake.take(lazy, "ws://relay") is None
    assert intake.dropped["pow"] == 1
    worked = wire.build(user, BEACON.pubkey, {"text": "hi"}, pow_bits=8)
    assert intake.take(worked, "ws://relay") is not None


def test_only_the_allowlist_is_answered_when_there_is_one(tmp_path: Path) -> None:
    friend, stranger = NostrKey.generate(), NostrKey.generate()
    intake = _intake(tmp_path, allowed={friend.pubkey})
    assert intake.take(wire.build(stranger, BEACON.pubkey, {"text": "hi"}), "ws://relay") is None
    assert intake.dropped["not_allowed"] == 1
    assert intake.take(wire.build(friend, BEACON.pubkey, {"text": "hi"}), "ws://relay") is not None


def test_a_payload_that_is_not_a_text_is_dropped_as_format(tmp_path: Path) -> None:
    intake = _intake(tmp_path)
    user = NostrKey.generate()
    for payload in ({"txt": "x"}, "just a string", {"text": 5}):
        assert intake.take(wire.build(user, BEACON.pubkey, payload), "ws://relay") is None
    assert intake.dropped["format"] == 3


def test_a_sender_beyond_its_rate_and_burst_is_dropped_while_others_are_not(tmp_path: Path) -> None:
    intake = _intake(tmp_path, nostr_sender_rate=0.001, nostr_sender_burst=2)
    flooder, calm = NostrKey.generate(), NostrKey.generate()
    taken = [intake.take(wire.build(flooder, BEACON.pubkey, {"text": str(i)}), "ws://relay") for i in range(4)]
    assert [m is not None for m in taken] == [True, True, False, False]
    assert intake.dropped["rate"] == 2
    assert intake.take(wire.build(calm, BEACON.pubkey, {"text": "hi"}), "ws://relay") is not None


async def test_the_workers_typing_receipt_is_settled_without_publishing_anything(tmp_path: Path) -> None:
    from pydantic import SecretStr

    from beacon.gateway.nostr.channel import NostrChannel
    from beacon.messages import OUTBOUND, BeaconMessage, utcnow

    s = make_settings(data_dir=tmp_path, nostr_private_key=SecretStr(BEACON.nsec),
                      nostr_relays=["ws://127.0.0.1:9"])
    channel = NostrChannel(s)
    user = NostrKey.generate()
    receipt = BeaconMessage(id="r1", user_key=f"nostr:{BEACON.pubkey}:{user.pubkey}", channel="nostr",
                            account=BEACON.pubkey, user_id=user.pubkey, direction=OUTBOUND, kind="read_receipt",
                            created_at=utcnow(), trace_id="t")
    request = channel.build(receipt)
    assert request is None
    assert await channel.send(receipt, request) is None  # no relay is reachable: nothing was tried
    text = receipt.model_copy(update={"kind": "text", "text": "hi"})
    assert channel.build(text) is not None
