"""The Bot API client: calls as ``POST <api>/bot<token>/<method>`` with JSON.

Calls go through one pool of keep-alive connections (``beacon.http_pool``: a fraction of aiohttp's client
CPU per request), never resent by the pool: a send is not idempotent, so a connection lost before the
answer is a BotApiError like any other unanswered call, and the sender engine decides. File downloads
(streamed, bounded, rare) keep an aiohttp session of their own.

The token is part of every URL, so nothing this module raises or logs contains a URL or an
underlying exception's text unredacted; network errors are re-raised without their cause chain.
"""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import Any

import aiohttp
import orjson

from beacon.config import Settings
from beacon.errors import ConfigError
from beacon.gateway.telegram.errors import Action, BotApiError, FileTooLargeError
from beacon.gateway.telegram.parse import HANDLED_UPDATES
from beacon.gateway.telegram.sends import BotCall
from beacon.http_pool import HttpError, HttpPool
from beacon.trace import HOPS_HEADER, TRACEPARENT, current_hops

Json = dict[str, Any]
_CHUNK = 64 * 1024
#: Seconds an idle connection to the Bot API is kept (aiohttp's default, which the calls used before).
KEEPALIVE = 15.0
_JSON = {"Content-Type": "application/json"}


class BotApiClient:
    """``call(method, params)`` -> the ``result`` of a Bot API call, or BotApiError (classified)."""

    def __init__(self, api_url: str, token: str, *, timeout: float = 10.0, max_connections: int = 100) -> None:
        if not token:
            raise ConfigError("no Telegram bot token: set BEACON_TELEGRAM_BOT_TOKEN (from @BotFather)")
        self.api_url = api_url.rstrip("/")
        self._token = token
        self._call_timeout = timeout
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._limit = max_connections
        self._session: aiohttp.ClientSession | None = None
        self._pool: HttpPool | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> BotApiClient:
        if settings.telegram.bot_token is None:
            raise ConfigError("no Telegram bot token: set BEACON_TELEGRAM_BOT_TOKEN (from @BotFather)")
        return cls(settings.telegram.api_url, settings.telegram.bot_token.get_secret_value(),
                   timeout=settings.telegram.send_timeout, max_connections=settings.gateway.max_in_flight)

    async def __aenter__(self) -> BotApiClient:
        return self

    async def __aexit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        await self.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        """The aiohttp session of file downloads."""
        if self._session is None:  # created on first use: a session belongs to the running event loop
            self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=self._limit),
                                                  timeout=self._timeout)
        return self._session

    def _call_pool(self) -> HttpPool:
        if self._pool is None:  # created on first use: its connections belong to the running event loop
            self._pool = HttpPool(self.api_url, limit=self._limit, keepalive=KEEPALIVE)
        return self._pool

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    def redact(self, text: str) -> str:
        """``text`` with the token replaced, for anything that might quote a URL."""
        return text.replace(self._token, "<token>")

    async def call(self, method: str, params: Json | None = None) -> Any:
        """Call ``method``; its ``result`` on success. A 429 on a call naming a chat slows that chat."""
        params = params or {}
        headers = _JSON
        if (trace := current_hops.get()) is not None:  # a send's trace (beacon.trace): Telegram ignores them
            headers = {**_JSON, TRACEPARENT: trace[0], HOPS_HEADER: trace[1]}
        try:
            async with (asyncio.timeout(self._call_timeout),
                        self._call_pool().request("POST", f"/bot{self._token}/{method}", headers,
                                                  orjson.dumps(params), resend=False) as response):
                raw = await response.read()
                status = response.status
        except (TimeoutError, HttpError) as exc:
            raise BotApiError(f"Bot API unreachable at {self.api_url} ({method}): "
                              f"{type(exc).__name__}: {self.redact(str(exc))}", method=method) from None
        try:
            data = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            data = None
        if status == 200 and isinstance(data, dict) and data.get("ok") is True:
            return data.get("result")
        raise BotApiError.from_response(method, status, data, chat_scoped="chat_id" in params)

    async def send_calls(self, calls: list[BotCall]) -> str | None:
        """Make the calls of one outbound message in order; the message_id of the last message sent.

        A failure part way raises at once: the calls already made are not undone (a retry repeats them).
        """
        sent: str | None = None
        for call in calls:
            result = await self.call(call.method, call.params)
            if isinstance(result, dict) and isinstance(result.get("message_id"), int):
                sent = str(result["message_id"])
        return sent

    async def get_file(self, file_id: str, max_bytes: int) -> bytes:
        """The bytes of a file a user sent (``getFile``, then the download), at most ``max_bytes``."""
        content, _path = await self.get_file_and_path(file_id, max_bytes)
        return content

    async def get_file_and_path(self, file_id: str, max_bytes: int) -> tuple[bytes, str]:
        """``get_file``, with the file's ``file_path`` (``photos/file_1.jpg``: its name tells its type)."""
        info = await self.call("getFile", {"file_id": file_id})
        path = info.get("file_path") if isinstance(info, dict) else None
        size = info.get("file_size") if isinstance(info, dict) else None
        if isinstance(size, int) and size > max_bytes:
            raise FileTooLargeError(f"Telegram file {file_id} is {size} bytes, more than the {max_bytes} allowed")
        if not isinstance(path, str) or not path:
            raise BotApiError(f"Telegram file {file_id} has no file_path (too large for the Bot API, or gone)",
                              method="getFile", action=Action.PERMANENT)
        url = f"{self.api_url}/file/bot{self._token}/{path}"
        chunks: list[bytes] = []
        total = 0
        try:
            async with self.session.get(url) as response:
                if response.status != 200:
                    raw = await response.read()
                    try:
                        body = orjson.loads(raw) if raw else None
                    except orjson.JSONDecodeError:
                        body = None
                    err = BotApiError.from_response("file download", response.status, body)
                    # a file that is gone is not a token problem; 5xx stays retryable
                    raise BotApiError(str(err), method="file download", http_status=response.status,
                                      error_code=err.error_code, description=err.description,
                                      action=Action.RETRY if response.status >= 500 else Action.PERMANENT)
                async for chunk in response.content.iter_chunked(_CHUNK):
                    total += len(chunk)
                    if total > max_bytes:
                        raise FileTooLargeError(f"Telegram file {file_id} is larger than the {max_bytes} bytes "
                                                "allowed (stopped reading)")
                    chunks.append(chunk)
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise BotApiError(f"Bot API file download of {file_id} failed: {type(exc).__name__}: "
                              f"{self.redact(str(exc))}", method="file download") from None
        return b"".join(chunks), path

    async def set_webhook(self, url: str, secret: str | None,
                          allowed_updates: tuple[str, ...] = HANDLED_UPDATES) -> bool:
        """Register ``url`` for the Update types Beacon handles, with the header secret."""
        params: Json = {"url": url, "allowed_updates": list(allowed_updates)}
        if secret:
            params["secret_token"] = secret
        return bool(await self.call("setWebhook", params))

    async def delete_webhook(self) -> bool:
        return bool(await self.call("deleteWebhook"))

    async def get_webhook_info(self) -> Json:
        """``url``, ``pending_update_count``, ``last_error_date``, ``last_error_message``, ..."""
        info = await self.call("getWebhookInfo")
        return info if isinstance(info, dict) else {}

    async def get_me(self) -> Json:
        me = await self.call("getMe")
        return me if isinstance(me, dict) else {}

    async def answer_callback_query(self, callback_query_id: str, text: str | None = None) -> bool:
        """Stop the button's spinner on the user's screen (Telegram expects it even with no text)."""
        params: Json = {"callback_query_id": callback_query_id}
        if text:
            params["text"] = text
        return bool(await self.call("answerCallbackQuery", params))
