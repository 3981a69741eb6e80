"""Webhook authentication: Telegram sends the secret given to ``setWebhook`` in a header.

Checked before anything is parsed, with a constant-time compare; the reason given for a refusal
never contains the secret or what the caller sent.
"""

from __future__ import annotations

import hmac

from beacon.errors import BeaconError

HEADER = "X-Telegram-Bot-Api-Secret-Token"


class WebhookAuthError(BeaconError):
    """The secret header is missing (``status`` 401) or wrong (``status`` 403): queue nothing."""

    def __init__(self, reason: str, status: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


def check_secret(header: str | None, secret: str) -> None:
    """Raise WebhookAuthError unless ``header`` equals ``secret``."""
    if not header:
        raise WebhookAuthError(f"missing {HEADER} header", 401)
    given = header.encode("utf-8", "surrogateescape")
    if not hmac.compare_digest(given, secret.encode()):
        raise WebhookAuthError(f"wrong {HEADER} header (not the secret set with setWebhook)", 403)
