"""Webhook signatures: ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body>``.

Always over the exact bytes received, before any parsing: Meta escapes non-ASCII as ``\\uXXXX``,
so re-serialised JSON would hash differently.
"""

from __future__ import annotations

import hashlib
import hmac

from beacon.gateway.channel import RequestRefusedError

HEADER = "X-Hub-Signature-256"
_PREFIX = "sha256="


class SignatureError(RequestRefusedError):
    """The webhook's signature is missing (``status`` 401) or wrong (``status`` 403)."""


def sign(body: bytes, secret: str) -> str:
    """The header value Meta would send for ``body``."""
    return _PREFIX + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def check_signature(body: bytes, header: str | None, secret: str) -> None:
    """Raise SignatureError unless ``header`` is the right signature of ``body`` (constant-time compare)."""
    if not header:
        raise SignatureError(f"missing {HEADER} header", 401)
    expected = sign(body, secret)
    given = header.strip().lower()  # may hold any bytes the sender put there (undecodable ones as surrogates)
    if not given.isascii() or not hmac.compare_digest(expected.encode(), given.encode()):
        raise SignatureError(f"wrong {HEADER} signature", 403)
