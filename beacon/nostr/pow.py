"""NIP-13 proof of work: the count of leading zero bits of an event id, and mining a ``nonce`` tag."""

from __future__ import annotations

from beacon.nostr.event import UnsignedEvent, event_id


def leading_zero_bits(hex_id: str) -> int:
    """Difficulty of an event id: how many of its leading bits are zero."""
    bits = 0
    for char in hex_id:
        nibble = int(char, 16)
        if nibble:
            return bits + 4 - nibble.bit_length()
        bits += 4
    return bits


def mine(event: UnsignedEvent, pubkey: str, bits: int) -> UnsignedEvent:
    """Add ``["nonce", n, bits]`` to ``event`` with the smallest n whose id has ``bits`` leading zero bits."""
    tags = [t for t in event.tags if t[:1] != ["nonce"]]
    nonce_tag = ["nonce", "0", str(bits)]
    tags.append(nonce_tag)
    nonce = 0
    while True:
        nonce_tag[1] = str(nonce)
        if leading_zero_bits(event_id(pubkey, event.created_at, event.kind, tags, event.content)) >= bits:
            return UnsignedEvent(event.kind, event.content, tags, event.created_at)
        nonce += 1
