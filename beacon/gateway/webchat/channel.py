"""The web chat as a ``Channel`` of the shared outbound engine (``beacon.gateway.outbound``): its "send"
records a reply in the visitor's history and pushes it to their open pages (``Replies``).

The engine gives the web chat what it gives every channel: its own consumer group on ``bm_out``, each
visitor's replies in order and visitors concurrently, in-order commits, the settled-id record, one
backoff policy, dead letters. The inbound side is not a webhook but the page's WebSocket
(``beacon.gateway.webchat.app``), so the webhook methods refuse.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from beacon.config import Settings
from beacon.gateway.channel import (
    Action,
    Limits,
    MalformedRequestError,
    Parsed,
    Rate,
    RequestRefusedError,
    SendError,
)
from beacon.gateway.webchat import CHANNEL
from beacon.gateway.webchat.replies import Replies
from beacon.messages import BeaconMessage

#: Nothing limits how fast a page is written to; retries are for the history store (a full disk, a lock).
UNLIMITED = Rate(per_second=0, burst=1)
LIMITS = Limits(account=UNLIMITED, retry_base_delay=0.5, retry_max_delay=10.0, retry_max_attempts=5,
                user_backoff_base=1.0, auth_pause=60.0)


class WebChatChannel:
    """Delivers this site's replies to its visitors; the account is the site."""

    name = CHANNEL
    api_name = "the visitors' history store"
    account_name = "site"
    webhook_path = "/ws"
    limits = LIMITS
    typing_refresh: float | None = None  # the page is not shown receipts (``replies.NOT_SHOWN``)

    def __init__(self, settings: Settings, replies: Replies) -> None:
        self.settings = settings
        self.replies = replies
        self.host = settings.webchat.host
        self.port = settings.webchat.port
        self.group = settings.webchat.gateway_group
        self.sent_store = settings.data_dir / "gateway-webchat-sent.db"

    def check_settings(self) -> None:
        return None  # the cookie secret is checked when the page's app is built

    # --- inbound: the page's WebSocket, not webhooks ------------------------------------------------

    def authenticate(self, headers: Mapping[str, str], body: bytes) -> None:
        raise RequestRefusedError("the web chat takes no webhooks: visitors write over its WebSocket", 403)

    def parse(self, body: bytes) -> Parsed:
        raise MalformedRequestError("the web chat takes no webhooks")

    def routes(self) -> list[web.RouteDef]:
        return []

    async def after_produce(self, messages: list[BeaconMessage]) -> None:
        return None

    # --- outbound --------------------------------------------------------------------------------

    def build(self, msg: BeaconMessage) -> BeaconMessage | None:
        """The message itself, or None for one this site does not show (another site's, a read receipt)."""
        return msg if self.replies.shows(msg) else None

    async def send(self, msg: BeaconMessage, request: Any) -> str | None:
        if request is None:
            self.replies.skipped()
            return None
        try:
            seq = await self.replies.deliver(msg)
        except sqlite3.Error as exc:  # the store fails for everyone: the engine pauses and probes, never drops
            raise SendError(f"recording reply {msg.id} for visitor {msg.user_id} failed: {exc}",
                            action=Action.RETRY) from exc
        return None if seq is None else str(seq)

    def user_rate(self, msg: BeaconMessage) -> Rate:
        return UNLIMITED

    def account_of(self, msg: BeaconMessage) -> str:
        return msg.account

    async def on_permanent_failure(self, msg: BeaconMessage, error: BaseException) -> None:
        return None

    async def close(self) -> None:
        return None
