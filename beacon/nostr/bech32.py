"""Bech32 (BIP-173) encoding of 32-byte keys, as NIP-19 uses it for ``npub`` and ``nsec``."""

from __future__ import annotations

_CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_GEN = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)


def _polymod(values: list[int]) -> int:
    chk = 1
    for value in values:
        top = chk >> 25
        chk = (chk & 0x1FFFFFF) << 5 ^ value
        for i, gen in enumerate(_GEN):
            chk ^= gen if (top >> i) & 1 else 0
    return chk


def _expand(hrp: str) -> list[int]:
    return [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]


def _convert(data: bytes | list[int], from_bits: int, to_bits: int, pad: bool) -> list[int]:
    acc = bits = 0
    out: list[int] = []
    maxv = (1 << to_bits) - 1
    for value in data:
        acc = (acc << from_bits) | value
        bits += from_bits
        while bits >= to_bits:
            bits -= to_bits
            out.append((acc >> bits) & maxv)
    if pad and bits:
        out.append((acc << (to_bits - bits)) & maxv)
    elif not pad and (bits >= from_bits or (acc << (to_bits - bits)) & maxv):
        raise ValueError("invalid padding")
    return out


def encode(hrp: str, data: bytes) -> str:
    """``hrp1...``: the bech32 string of ``data``."""
    words = _convert(data, 8, 5, True)
    polymod = _polymod([*_expand(hrp), *words, 0, 0, 0, 0, 0, 0]) ^ 1
    checksum = [(polymod >> 5 * (5 - i)) & 31 for i in range(6)]
    return hrp + "1" + "".join(_CHARSET[w] for w in words + checksum)


def decode(text: str) -> tuple[str, bytes]:
    """(hrp, data) of a bech32 string; ValueError when it is malformed or its checksum is wrong."""
    text = text.strip()
    if text.lower() != text and text.upper() != text:
        raise ValueError("mixed case")
    text = text.lower()
    pos = text.rfind("1")
    if pos < 1 or pos + 7 > len(text):
        raise ValueError("no separator or too short")
    hrp, rest = text[:pos], text[pos + 1 :]
    try:
        words = [_CHARSET.index(c) for c in rest]
    except ValueError as exc:
        raise ValueError("character outside the bech32 alphabet") from exc
    if _polymod([*_expand(hrp), *words]) != 1:
        raise ValueError("bad checksum")
    return hrp, bytes(_convert(words[:-6], 5, 8, False))
