"""NIP-04 encryption: AES-256-CBC keyed by the x-coordinate of the ECDH point, ``base64?iv=base64``."""

from __future__ import annotations

import base64
import binascii
import os

from coincurve import PublicKey
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from beacon.nostr.keys import NostrKey


def shared_secret(key: NostrKey, pubkey: str) -> bytes:
    """The unhashed x-coordinate of ``pubkey * secret`` (NIP-04 uses it as the AES key, not sha256 of it)."""
    point = PublicKey(b"\x02" + bytes.fromhex(pubkey)).multiply(key.secret)
    return point.format(compressed=True)[1:]


def encrypt(key: NostrKey, pubkey: str, text: str) -> str:
    """Encrypt ``text`` from ``key`` to ``pubkey``."""
    iv = os.urandom(16)
    padder = padding.PKCS7(128).padder()
    data = padder.update(text.encode()) + padder.finalize()
    encryptor = Cipher(algorithms.AES(shared_secret(key, pubkey)), modes.CBC(iv)).encryptor()
    ciphertext = encryptor.update(data) + encryptor.finalize()
    return f"{base64.b64encode(ciphertext).decode()}?iv={base64.b64encode(iv).decode()}"


def decrypt(key: NostrKey, pubkey: str, content: str) -> str:
    """Decrypt ``content`` sent between ``key`` and ``pubkey``; ValueError when it does not decrypt."""
    body, sep, iv_text = content.partition("?iv=")
    if not sep:
        raise ValueError("NIP-04 content has no '?iv=' part")
    try:
        ciphertext = base64.b64decode(body, validate=True)
        iv = base64.b64decode(iv_text, validate=True)
    except binascii.Error as exc:
        raise ValueError(f"NIP-04 content is not base64: {exc}") from exc
    if len(iv) != 16 or not ciphertext or len(ciphertext) % 16:
        raise ValueError("NIP-04 content has a wrong iv or ciphertext length")
    decryptor = Cipher(algorithms.AES(shared_secret(key, pubkey)), modes.CBC(iv)).decryptor()
    data = decryptor.update(ciphertext) + decryptor.finalize()
    unpadder = padding.PKCS7(128).unpadder()
    try:
        plain = unpadder.update(data) + unpadder.finalize()
        return plain.decode()
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError("NIP-04 content does not decrypt with this key pair") from exc
