"""Visitor identity: a random visitor id in a cookie signed with BEACON_WEBCHAT_SECRET.

The cookie is ``<visitor id>.<signature>``, the signature an HMAC-SHA256 over the site and the id,
so a cookie of one site (or a forged id) is refused; it is HttpOnly and SameSite=Lax, so page
scripts cannot read it and other sites' pages cannot ride on it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

COOKIE_NAME = "beacon_visitor"
COOKIE_MAX_AGE = 365 * 24 * 3600  # a visitor keeps their conversation for a year on one browser


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class VisitorCookies:
    """Issues and checks signed visitor cookies for one site."""

    def __init__(self, secret: str, site: str) -> None:
        self._key = secret.encode()
        self._site = site

    def _signature(self, visitor_id: str) -> str:
        mac = hmac.new(self._key, f"webchat-visitor\x1f{self._site}\x1f{visitor_id}".encode(), hashlib.sha256)
        return _b64(mac.digest())

    def issue(self) -> tuple[str, str]:
        """A new visitor: (visitor id, cookie value)."""
        visitor_id = _b64(secrets.token_bytes(16))
        return visitor_id, f"{visitor_id}.{self._signature(visitor_id)}"

    def visitor(self, cookie: str | None) -> str | None:
        """The visitor id a cookie carries, or None when it is missing, malformed or not signed by us."""
        if not cookie or cookie.count(".") != 1 or len(cookie) > 200:
            return None
        visitor_id, signature = cookie.split(".")
        if not visitor_id or not hmac.compare_digest(signature, self._signature(visitor_id)):
            return None
        return visitor_id
