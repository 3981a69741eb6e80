"""Telegram as a ``Channel``: the secret header, the Update parser, the Bot API calls of a reply, the
client and its error classes, Telegram's limits, plugged into the shared gateway. The account is the
bot (its id, the head of the token); a user is a chat."""

from __future__ import annotations

import asyncio
import logging
import mimetypes
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from beacon.config import Settings
from beacon.errors import ConfigError
from beacon.gateway.channel import Action, Dropped, Limits, Parsed, Rate, SendError
from beacon.gateway.media import FetchedMedia, MediaFetchError, MediaNotFoundError, MediaTooLargeError
from beacon.gateway.optout import mark_opted_out
from beacon.gateway.telegram import CHANNEL, bot_id_of
from beacon.gateway.telegram.auth import HEADER, check_secret
from beacon.gateway.telegram.client import BotApiClient
from beacon.gateway.telegram.errors import BotApiError, FileTooLargeError
from beacon.gateway.telegram.limits import bot_rate, chat_rate
from beacon.gateway.telegram.parse import parse_update
from beacon.gateway.telegram.sends import BotCall, build_calls
from beacon.messages import BeaconMessage

log = logging.getLogger("beacon.gateway.telegram")

WEBHOOK_PATH = "/webhooks/telegram"
#: Metadata the parser puts on a button press: answered with ``answerCallbackQuery`` once it is on bm_in.
CALLBACK_QUERY_ID = "telegram.callback_query_id"
#: Seconds a webhook's answer waits for ``answerCallbackQuery`` (the button's spinner; the press is safe anyway).
ANSWER_TIMEOUT = 2.0


class TelegramChannel:
    """The Telegram Bot API channel (a ``beacon.gateway.channel.Channel``)."""

    name = CHANNEL
    api_name = "the Bot API"
    account_name = "bot"
    webhook_path = WEBHOOK_PATH

    def __init__(self, settings: Settings) -> None:
        s = settings
        self.settings = settings
        if s.telegram.bot_token is None or not s.telegram.bot_token.get_secret_value():
            raise ConfigError("BEACON_TELEGRAM_BOT_TOKEN is not set: the Telegram gateway needs the bot's token "
                              "(from @BotFather, `<bot id>:<secret>`).")
        try:
            self.bot_id = bot_id_of(s.telegram.bot_token.get_secret_value())
        except ValueError as exc:
            raise ConfigError(f"BEACON_TELEGRAM_BOT_TOKEN: {exc}") from None
        self.secret = s.telegram.webhook_secret.get_secret_value() if s.telegram.webhook_secret else None
        self.host = s.telegram.host
        self.port = s.telegram.port
        self.group = s.telegram.gateway_group
        self.sent_store = s.telegram.sent_store or s.data_dir / "gateway-telegram-sent.db"
        bot = bot_rate(s)
        self.limits = Limits(
            account=Rate(bot.rate, bot.burst),
            retry_base_delay=s.telegram.retry_base_delay, retry_max_delay=s.telegram.retry_max_delay,
            retry_max_attempts=s.telegram.retry_max_attempts, user_backoff_base=s.telegram.retry_base_delay,
            auth_pause=s.telegram.auth_pause,
        )
        self.typing_refresh: float | None = s.telegram.typing_refresh
        self.client = BotApiClient.from_settings(settings)

    def check_settings(self) -> None:
        """Refuse to accept webhooks without a secret in production; warn loudly in development."""
        if self.secret:
            return
        if self.settings.env == "production":
            raise ConfigError("BEACON_TELEGRAM_WEBHOOK_SECRET is not set: the Telegram gateway cannot tell "
                              "Telegram's webhooks from anyone else's and refuses to start in production. Set it "
                              "and register it with `beacon telegram set-webhook URL`.")
        log.warning("!" * 78)
        log.warning("UNAUTHENTICATED TELEGRAM WEBHOOKS ACCEPTED: BEACON_TELEGRAM_WEBHOOK_SECRET is not set.")
        log.warning("Anyone who can reach this port can inject messages. Development only.")
        log.warning("!" * 78)

    # --- inbound ----------------------------------------------------------------------------------

    def authenticate(self, headers: Mapping[str, str], body: bytes) -> None:
        if self.secret:
            check_secret(headers.get(HEADER), self.secret)

    def parse(self, body: bytes) -> Parsed:
        update = parse_update(body, self.bot_id)  # a MalformedUpdateError is a MalformedRequestError: 400
        dropped = [Dropped(d.what, d.reason, None if d.update_id is None else f"update {d.update_id}", self.bot_id)
                   for d in update.dropped]
        return Parsed(update.messages, dropped)

    def routes(self) -> list[web.RouteDef]:
        return []

    async def after_produce(self, messages: list[BeaconMessage]) -> None:
        """Answer the button presses now safely on bm_in, so the user's button stops spinning (best effort:
        the press is delivered whatever happens here)."""
        ids = [m.metadata[CALLBACK_QUERY_ID] for m in messages if CALLBACK_QUERY_ID in m.metadata]
        if not ids:
            return
        results = await asyncio.gather(*(asyncio.wait_for(self.client.answer_callback_query(i), ANSWER_TIMEOUT)
                                         for i in ids), return_exceptions=True)
        for query_id, result in zip(ids, results, strict=True):
            if isinstance(result, BaseException):
                log.warning("answerCallbackQuery for button press %s failed (%s); the press itself is queued",
                            query_id, self.client.redact(str(result) or type(result).__name__)[:300])

    # --- outbound ---------------------------------------------------------------------------------

    def build(self, msg: BeaconMessage) -> list[BotCall]:
        return build_calls(msg)

    async def send(self, msg: BeaconMessage, request: Any) -> str | None:
        return await self.client.send_calls(request)  # a BotApiError is a SendError

    def user_rate(self, msg: BeaconMessage) -> Rate:
        chat = chat_rate(self.settings, msg.user_id)
        return Rate(chat.rate, chat.burst)

    def account_of(self, msg: BeaconMessage) -> str:
        return msg.account or self.bot_id

    async def on_permanent_failure(self, msg: BeaconMessage, error: BaseException) -> None:
        """A user who blocked the bot (or whose account is gone) is marked opted out through the API."""
        if isinstance(error, SendError) and error.opt_out:
            await mark_opted_out(self.settings, msg.user_key, str(error)[:200])

    # --- media ------------------------------------------------------------------------------------

    async def fetch_media(self, account: str, media_id: str, max_bytes: int) -> FetchedMedia:
        """A user's file by ``file_id`` (``getFile``, then the download; ``beacon.gateway.media``)."""
        if account != self.bot_id:
            raise MediaNotFoundError(f"Telegram file {media_id} belongs to bot {account}, not to this gateway's bot "
                                     f"{self.bot_id}")
        try:
            content, path = await self.client.get_file_and_path(
                media_id, min(max_bytes, self.settings.telegram.max_file_bytes))
        except FileTooLargeError as exc:
            raise MediaTooLargeError(str(exc)) from None
        except BotApiError as exc:
            if exc.action is Action.PERMANENT or exc.status == 400:
                raise MediaNotFoundError(f"Telegram file {media_id} is unknown or gone: {exc}") from None
            raise MediaFetchError(f"Telegram file {media_id} not fetched: {exc}") from None
        content_type = mimetypes.guess_type(path)[0] or "application/octet-stream"
        return FetchedMedia(content, content_type)

    async def close(self) -> None:
        await self.client.close()
