"""The NostrMQ wire format, as the reference library (humansinstitute/nostrMQ) writes and reads it.

One message = one kind-30072 event signed by the sender, tagged ``["p", target]`` and
``["d", unique id]`` (plus ``["response", pubkey]`` when replies go elsewhere than the sender and a
NIP-13 ``["nonce", n, bits]`` when proof of work was asked for), whose content is the NIP-04
encryption of ``{"target", "response", "payload"}``. Unlike the reference, opening a message here
also verifies the event's id and signature.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from beacon.errors import BadEventError
from beacon.nostr import nip04
from beacon.nostr.event import Event, UnsignedEvent
from beacon.nostr.keys import NostrKey, is_pubkey_hex
from beacon.nostr.pow import mine

KIND = 30072


def unique_d() -> str:
    """A fresh ``d`` tag: kind 30072 is parameterized-replaceable, so a reused ``d`` replaces the earlier event."""
    return f"{int(time.time() * 1000):x}{secrets.token_hex(8)}"


def build(key: NostrKey, target: str, payload: Any, *, response: str | None = None, pow_bits: int = 0,
          created_at: int | None = None, expires_in: int | None = None) -> Event:
    """A signed NostrMQ message carrying ``payload`` (any JSON) from ``key`` to ``target``.

    ``expires_in`` adds a NIP-40 ``expiration`` tag (relays that honour it delete the event after that
    many seconds; the reference ignores the tag)."""
    sender = key.pubkey
    reply_to = response or sender
    body = json.dumps({"target": target, "response": reply_to, "payload": payload}, separators=(",", ":"),
                      ensure_ascii=False)
    tags = [["p", target], ["d", unique_d()]]
    if reply_to != sender:
        tags.append(["response", reply_to])
    unsigned = UnsignedEvent(KIND, nip04.encrypt(key, target, body), tags)
    if created_at is not None:
        unsigned.created_at = created_at
    if expires_in is not None:
        tags.append(["expiration", str(unsigned.created_at + expires_in)])
    if pow_bits > 0:
        unsigned = mine(unsigned, sender, pow_bits)
    return unsigned.sign(key)


@dataclass(frozen=True)
class Received:
    """An opened NostrMQ message: who sent it, where replies go, its ``d`` and its payload."""

    event: Event
    sender: str
    response: str
    payload: Any

    @property
    def d(self) -> str:
        return self.event.tag("d") or ""


def open_event(key: NostrKey, event: Event, *, peers: Collection[str] | None = None) -> Received:
    """Verify, decrypt and parse a NostrMQ message addressed to ``key``; BadEventError says why not.

    With ``peers``, a correctly signed event from any other pubkey is refused before decrypting it."""
    eid, sender = event.id, event.pubkey

    def bad(reason: str, detail: str) -> BadEventError:
        return BadEventError(reason, detail, event_id=eid, sender=sender)

    if event.kind != KIND:
        raise bad("format", f"kind {event.kind} is not {KIND}")
    if not event.verify():
        raise bad("signature", "the id or the Schnorr signature does not match the event")
    if peers is not None and sender not in peers:
        raise bad("foreign", "the sender is not a configured peer (BEACON_NOSTR_PEERS)")
    me = key.pubkey
    if not any(len(t) >= 2 and t[0] == "p" and t[1] == me for t in event.tags):
        raise bad("target", "no p tag names our pubkey")
    try:
        text = nip04.decrypt(key, sender, event.content)
    except ValueError as exc:
        raise bad("undecryptable", str(exc)) from exc
    try:
        body = json.loads(text)
    except json.JSONDecodeError as exc:
        raise bad("format", f"decrypted content is not JSON: {exc}") from exc
    if not isinstance(body, dict) or "payload" not in body or not body.get("target") or not body.get("response"):
        raise bad("format", "decrypted JSON lacks target, response or payload")
    if body["target"] != me:
        raise bad("target", f"payload target {str(body['target'])[:16]}... is not our pubkey")
    if not is_pubkey_hex(body["target"]) or not is_pubkey_hex(body["response"]):
        raise bad("format", "target or response is not a 64-hex-digit pubkey")
    return Received(event, sender, body["response"], body["payload"])
