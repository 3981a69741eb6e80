"""NIP-01 events: the id (sha256 of the canonical serialization), the Schnorr signature, verification."""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from typing import Any

from coincurve import PublicKeyXOnly

from beacon.nostr.keys import NostrKey, is_pubkey_hex

Tags = list[list[str]]


def event_id(pubkey: str, created_at: int, kind: int, tags: Tags, content: str) -> str:
    """The NIP-01 id: sha256 of ``[0, pubkey, created_at, kind, tags, content]`` as compact UTF-8 JSON."""
    serialized = json.dumps([0, pubkey, created_at, kind, tags, content], separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(serialized.encode()).hexdigest()


@dataclass(frozen=True)
class Event:
    """A signed Nostr event as relays carry it."""

    id: str
    pubkey: str
    created_at: int
    kind: int
    tags: Tags
    content: str
    sig: str

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "pubkey": self.pubkey, "created_at": self.created_at, "kind": self.kind,
                "tags": self.tags, "content": self.content, "sig": self.sig}

    @classmethod
    def from_json(cls, data: Any) -> Event:
        """An event from a relay's JSON; ValueError when a field is missing or of the wrong type."""
        if not isinstance(data, dict):
            raise ValueError("an event is a JSON object")
        try:
            tags = data["tags"]
            if not isinstance(tags, list) or not all(
                isinstance(t, list) and all(isinstance(x, str) for x in t) for t in tags
            ):
                raise ValueError("tags must be a list of lists of strings")
            event = cls(str(data["id"]), str(data["pubkey"]), int(data["created_at"]), int(data["kind"]),
                        tags, str(data["content"]), str(data["sig"]))
        except (KeyError, TypeError) as exc:
            raise ValueError(f"malformed event: {exc!r}") from exc
        return event

    def tag(self, name: str) -> str | None:
        """The first value of the first tag called ``name``."""
        for tag in self.tags:
            if len(tag) >= 2 and tag[0] == name:
                return tag[1]
        return None

    def verify(self) -> bool:
        """True when the id matches the content and the signature is the pubkey's."""
        if not is_pubkey_hex(self.pubkey):
            return False
        if event_id(self.pubkey, self.created_at, self.kind, self.tags, self.content) != self.id:
            return False
        try:
            return bool(PublicKeyXOnly(bytes.fromhex(self.pubkey)).verify(bytes.fromhex(self.sig),
                                                                           bytes.fromhex(self.id)))
        except ValueError:
            return False


@dataclass
class UnsignedEvent:
    """An event being built; ``sign`` fixes its id and signature."""

    kind: int
    content: str
    tags: Tags = field(default_factory=list)
    created_at: int = field(default_factory=lambda: int(time.time()))

    def sign(self, key: NostrKey) -> Event:
        pubkey = key.pubkey
        eid = event_id(pubkey, self.created_at, self.kind, self.tags, self.content)
        sig = key.private_key.sign_schnorr(bytes.fromhex(eid))
        return Event(eid, pubkey, self.created_at, self.kind, [list(t) for t in self.tags], self.content, sig.hex())
