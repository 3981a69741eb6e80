"""WhatsApp as a ``Channel``: what is its own (signatures, the parser, request bodies, the Cloud API
client and its error codes, limits per business number, media by id) plugged into the shared gateway."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from beacon.config import Settings
from beacon.errors import ConfigError
from beacon.gateway.channel import Dropped, Limits, MalformedRequestError, Parsed, Rate
from beacon.gateway.media import FetchedMedia
from beacon.gateway.whatsapp import CHANNEL
from beacon.gateway.whatsapp.client import CloudApiClient
from beacon.gateway.whatsapp.media import fetch_media
from beacon.gateway.whatsapp.parse import MalformedWebhookError, parse_notification
from beacon.gateway.whatsapp.sends import build_request
from beacon.gateway.whatsapp.signature import HEADER, SignatureError, check_signature
from beacon.messages import BeaconMessage

log = logging.getLogger("beacon.gateway.whatsapp")

WEBHOOK_PATH = "/webhooks/whatsapp"
NO_SECRET = ("BEACON_WHATSAPP_APP_SECRET is not set: the gateway cannot check webhook signatures and refuses to "
             "start. Set it to your Meta app secret (or, for local development only, set "
             "BEACON_WHATSAPP_ALLOW_UNSIGNED=true).")


class WhatsAppChannel:
    """The WhatsApp Cloud API channel (a ``beacon.gateway.channel.Channel``); the account is the
    business phone number id."""

    name = CHANNEL
    api_name = "the Cloud API"
    account_name = "number"
    webhook_path = WEBHOOK_PATH

    def __init__(self, settings: Settings) -> None:
        s = settings
        self.settings = settings
        self.host = s.gateway.host
        self.port = s.whatsapp.gateway_port
        self.group = s.whatsapp.gateway_group
        self.sent_store = s.whatsapp.sent_store or s.data_dir / "gateway-whatsapp-sent.db"
        self.limits = Limits(
            account=Rate(s.whatsapp.rate_limit, s.whatsapp.rate_limit),
            retry_base_delay=s.whatsapp.retry_base_delay, retry_max_delay=s.whatsapp.retry_max_delay,
            retry_max_attempts=s.whatsapp.retry_max_attempts, user_backoff_base=s.whatsapp.user_backoff_base,
            auth_pause=s.whatsapp.auth_pause,
        )
        self._user_rate = Rate(s.whatsapp.user_rate, s.whatsapp.user_burst)
        self.typing_refresh: float | None = None  # the Cloud API shows it until the reply (or 25 s)
        self.secret = s.whatsapp.app_secret.get_secret_value() if s.whatsapp.app_secret else None
        self.verify_token = s.whatsapp.verify_token.get_secret_value() if s.whatsapp.verify_token else None
        self.client = CloudApiClient(settings)

    def check_settings(self) -> None:
        """Refuse to run without an app secret unless unsigned webhooks are explicitly allowed."""
        check_settings(self.settings)

    # --- inbound ----------------------------------------------------------------------------------

    def authenticate(self, headers: Mapping[str, str], body: bytes) -> None:
        if self.secret:
            check_signature(body, headers.get(HEADER), self.secret)
        elif not self.settings.whatsapp.allow_unsigned:  # check_settings refuses this at start; never fail open
            raise SignatureError("no app secret configured to check signatures against", 403)

    def parse(self, body: bytes) -> Parsed:
        try:
            notification = parse_notification(body)
        except MalformedWebhookError as exc:
            raise MalformedRequestError(str(exc)) from exc
        return Parsed(notification.messages,
                      [Dropped(d.what, d.reason, d.wamid, d.account) for d in notification.dropped])

    def routes(self) -> list[web.RouteDef]:
        return [web.get(WEBHOOK_PATH, self.verify)]

    async def verify(self, request: web.Request) -> web.Response:
        """Meta's subscription handshake: echo ``hub.challenge`` for the right verify token."""
        q = request.query
        token = q.get("hub.verify_token")
        if q.get("hub.mode") == "subscribe" and self.verify_token and token == self.verify_token:
            return web.Response(text=q.get("hub.challenge", ""))
        log.warning("webhook verification refused (mode %r, token %s)", q.get("hub.mode", "")[:20],
                    "missing" if not token else "wrong")
        return web.Response(status=403, text="verification failed")

    async def after_produce(self, messages: list[BeaconMessage]) -> None:
        return None

    # --- outbound ---------------------------------------------------------------------------------

    def build(self, msg: BeaconMessage) -> dict[str, Any]:
        return build_request(msg)

    async def send(self, msg: BeaconMessage, request: Any) -> str | None:
        answer = await self.client.send(msg.account, request)
        wamid = (answer.get("messages") or [{}])[0].get("id") if isinstance(answer, dict) else None
        return wamid if isinstance(wamid, str) else None

    def user_rate(self, msg: BeaconMessage) -> Rate:
        return self._user_rate

    def account_of(self, msg: BeaconMessage) -> str:
        return msg.account

    async def on_permanent_failure(self, msg: BeaconMessage, error: BaseException) -> None:
        return None

    # --- media ------------------------------------------------------------------------------------

    async def fetch_media(self, account: str, media_id: str, max_bytes: int) -> FetchedMedia:
        """A user's media by id, with the number's token (``beacon.gateway.media``)."""
        return await fetch_media(self.client, account, media_id, max_bytes)

    async def close(self) -> None:
        await self.client.close()


def check_settings(settings: Settings) -> None:
    """Refuse to run without an app secret unless unsigned webhooks are explicitly allowed."""
    if settings.whatsapp.app_secret is None or not settings.whatsapp.app_secret.get_secret_value():
        if not settings.whatsapp.allow_unsigned:
            raise ConfigError(NO_SECRET)
        log.warning("!" * 78)
        log.warning("UNSIGNED WEBHOOKS ACCEPTED: BEACON_WHATSAPP_ALLOW_UNSIGNED is set and there is no app secret.")
        log.warning("Anyone who can reach this port can inject messages. Development only.")
        log.warning("!" * 78)
    if settings.whatsapp.access_token is None and not settings.whatsapp.access_tokens:
        log.warning("no BEACON_WHATSAPP_ACCESS_TOKEN: outbound sends will pause until one is configured")
