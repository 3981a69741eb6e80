"""The Cloud API client of the sender: the number's token, errors as CloudApiError.

Sends go through one pool of keep-alive connections (``beacon.http_pool``: a fraction of aiohttp's
client CPU per request), never resent by the pool: a send is not idempotent, so a connection lost
before the answer is a CloudApiError like any other unanswered send, and the sender engine decides.
Media lookups and downloads (``beacon.gateway.whatsapp.media``: streamed, bounded, rare) keep an
aiohttp session of their own.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson

from beacon.config import Settings
from beacon.gateway.whatsapp.errors import CloudApiError
from beacon.http_pool import HttpError, HttpPool
from beacon.trace import HOPS_HEADER, TRACEPARENT, current_hops

#: Seconds an idle connection to the Cloud API is kept (aiohttp's default, which the sends used before).
KEEPALIVE = 15.0


class CloudApiClient:
    """``send(phone_number_id, body)`` -> the Cloud API's JSON answer, or CloudApiError."""

    def __init__(self, settings: Settings) -> None:
        self.base = settings.whatsapp.graph_url.rstrip("/") + "/" + settings.whatsapp.api_version
        self.default_token = (settings.whatsapp.access_token.get_secret_value()
                              if settings.whatsapp.access_token else None)
        self.tokens = {k: v.get_secret_value() for k, v in settings.whatsapp.access_tokens.items()}
        self._send_timeout = settings.whatsapp.send_timeout
        self._timeout = aiohttp.ClientTimeout(total=settings.whatsapp.send_timeout)
        self._limit = settings.gateway.max_in_flight
        self._session: aiohttp.ClientSession | None = None
        self._pool: HttpPool | None = None
        self._headers: dict[str, dict[str, str]] = {}

    def token_for(self, phone_number_id: str) -> str | None:
        return self.tokens.get(phone_number_id, self.default_token)

    @property
    def session(self) -> aiohttp.ClientSession:
        """The aiohttp session of media lookups and downloads (created on first use, on the running loop)."""
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._limit), timeout=self._timeout,
                json_serialize=lambda o: orjson.dumps(o).decode(),
            )
        return self._session

    def _send_pool(self) -> HttpPool:
        if self._pool is None:  # created on first use: its connections belong to the running loop
            self._pool = HttpPool(self.base, limit=self._limit, keepalive=KEEPALIVE)
        return self._pool

    def _send_headers(self, token: str) -> dict[str, str]:
        """The headers of a send with ``token`` (built once per token; a copy when a trace is added)."""
        headers = self._headers.get(token)
        if headers is None:
            headers = self._headers[token] = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        if (trace := current_hops.get()) is not None:  # the Cloud API ignores them; the fake records them
            headers = {**headers, TRACEPARENT: trace[0], HOPS_HEADER: trace[1]}
        return headers

    async def send(self, phone_number_id: str, body: dict[str, Any]) -> dict[str, Any]:
        token = self.token_for(phone_number_id)
        if token is None:
            raise CloudApiError(f"no access token for phone number {phone_number_id} (set BEACON_WHATSAPP_ACCESS_TOKEN"
                                " or BEACON_WHATSAPP_ACCESS_TOKENS)", code=190)
        path = f"/{quote(phone_number_id, safe='')}/messages"
        try:
            async with (asyncio.timeout(self._send_timeout),
                        self._send_pool().request("POST", path, self._send_headers(token),
                                                  orjson.dumps(body), resend=False) as response):
                raw = await response.read()
                status = response.status
        except (TimeoutError, HttpError) as exc:
            raise CloudApiError(f"Cloud API unreachable at {self.base}{path}: {type(exc).__name__}: {exc}") from exc
        try:
            data = orjson.loads(raw) if raw else {}
        except orjson.JSONDecodeError:
            data = None
        if status == 200 and isinstance(data, dict) and "error" not in data:
            return data
        return _raise(status, data)

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
        if self._session is not None:
            await self._session.close()
            self._session = None


def _raise(status: int, data: Any) -> dict[str, Any]:
    raise CloudApiError.from_response(status, data)
