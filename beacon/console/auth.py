"""The console's operator login: a token exchanged for a signed session cookie, and the checks on
state-changing requests (a CSRF token bound to the session, and the request's Origin).

The cookie holds ``<session id>.<issued unix time>.<HMAC-SHA256 of both>`` keyed by the console
token, so changing the token logs every operator out. It is HttpOnly and SameSite=Strict.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from urllib.parse import urlparse

COOKIE = "beacon_console"
#: Seconds a login lasts.
SESSION_SECONDS = 12 * 3600


def _sign(key: str, text: str) -> str:
    return hmac.new(key.encode(), text.encode(), hashlib.sha256).hexdigest()


def token_matches(given: str, token: str) -> bool:
    """Whether a login form's token is the console token (constant-time comparison)."""
    return hmac.compare_digest(given.encode(), token.encode())


def new_session(token: str, now: float | None = None) -> str:
    """A signed session cookie value."""
    body = f"{secrets.token_hex(16)}.{int(now if now is not None else time.time())}"
    return f"{body}.{_sign(token, body)}"


def session_id(token: str, cookie: str | None, now: float | None = None) -> str | None:
    """The session id of a valid, unexpired cookie, else None."""
    if not cookie or cookie.count(".") != 2:
        return None
    sid, issued, signature = cookie.split(".")
    if not hmac.compare_digest(signature, _sign(token, f"{sid}.{issued}")):
        return None
    try:
        age = (now if now is not None else time.time()) - int(issued)
    except ValueError:
        return None
    return sid if 0 <= age <= SESSION_SECONDS else None


def csrf_token(token: str, sid: str) -> str:
    """The CSRF token forms of this session carry."""
    return _sign(token, f"csrf:{sid}")


def same_origin(origin: str | None, host: str | None) -> bool:
    """Whether a POST's Origin header names this console's host (a missing Origin is refused)."""
    if not origin or not host:
        return False
    return urlparse(origin).netloc == host
