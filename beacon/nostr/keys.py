"""Nostr keys: secp256k1 private keys (hex or NIP-19 ``nsec``), x-only public keys (hex or ``npub``)."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass

from coincurve import PrivateKey

from beacon.nostr import bech32

_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")


def parse_private_key(text: str) -> bytes:
    """The 32 bytes of a private key given as 64 hex digits or an ``nsec``; ValueError otherwise."""
    text = text.strip()
    if _HEX64.match(text):
        return bytes.fromhex(text)
    if text.lower().startswith("nsec1"):
        hrp, data = bech32.decode(text)
        if hrp == "nsec" and len(data) == 32:
            return data
    raise ValueError("a Nostr private key is 64 hex digits or an nsec1... string")


def parse_public_key(text: str) -> str:
    """The lower-case hex of a public key given as 64 hex digits or an ``npub``; ValueError otherwise."""
    text = text.strip()
    if _HEX64.match(text):
        return text.lower()
    if text.lower().startswith("npub1"):
        hrp, data = bech32.decode(text)
        if hrp == "npub" and len(data) == 32:
            return data.hex()
    raise ValueError(f"{text[:12]}...: a Nostr public key is 64 hex digits or an npub1... string")


def is_pubkey_hex(text: object) -> bool:
    """True for 64 hex digits (what the reference checks for pubkeys in a NostrMQ payload)."""
    return isinstance(text, str) and bool(_HEX64.match(text))


@dataclass(frozen=True, repr=False)
class NostrKey:
    """A private key and its x-only public key; ``repr`` never shows the secret."""

    secret: bytes

    @classmethod
    def generate(cls) -> NostrKey:
        return cls(PrivateKey(secrets.token_bytes(32)).secret)

    @classmethod
    def parse(cls, text: str) -> NostrKey:
        return cls(parse_private_key(text))

    @property
    def private_key(self) -> PrivateKey:
        return PrivateKey(self.secret)

    @property
    def pubkey(self) -> str:
        """The x-only public key, 64 lower-case hex digits (what events carry)."""
        return self.private_key.public_key_xonly.format().hex()

    @property
    def npub(self) -> str:
        return bech32.encode("npub", bytes.fromhex(self.pubkey))

    @property
    def nsec(self) -> str:
        return bech32.encode("nsec", self.secret)

    def __repr__(self) -> str:
        return f"NostrKey(pubkey={self.pubkey})"
