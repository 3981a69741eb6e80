"""The Cloud API client of the sender: one aiohttp session, the number's token, errors as CloudApiError."""

from __future__ import annotations

from typing import Any

import aiohttp
import orjson

from beacon.config import Settings
from beacon.gateway.whatsapp.errors import CloudApiError
from beacon.trace import HOPS_HEADER, TRACEPARENT, current_hops


class CloudApiClient:
    """``send(phone_number_id, body)`` -> the Cloud API's JSON answer, or CloudApiError."""

    def __init__(self, settings: Settings) -> None:
        self.base = settings.whatsapp.graph_url.rstrip("/") + "/" + settings.whatsapp.api_version
        self.default_token = (settings.whatsapp.access_token.get_secret_value()
                              if settings.whatsapp.access_token else None)
        self.tokens = {k: v.get_secret_value() for k, v in settings.whatsapp.access_tokens.items()}
        self._timeout = aiohttp.ClientTimeout(total=settings.whatsapp.send_timeout)
        self._limit = settings.gateway.max_in_flight
        self._session: aiohttp.ClientSession | None = None

    def token_for(self, phone_number_id: str) -> str | None:
        return self.tokens.get(phone_number_id, self.default_token)

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._limit), timeout=self._timeout,
                json_serialize=lambda o: orjson.dumps(o).decode(),
            )
        return self._session

    async def send(self, phone_number_id: str, body: dict[str, Any]) -> dict[str, Any]:
        token = self.token_for(phone_number_id)
        if token is None:
            raise CloudApiError(f"no access token for phone number {phone_number_id} (set BEACON_WHATSAPP_ACCESS_TOKEN"
                                " or BEACON_WHATSAPP_ACCESS_TOKENS)", code=190)
        url = f"{self.base}/{phone_number_id}/messages"
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        if (trace := current_hops.get()) is not None:  # the Cloud API ignores them; the fake records them
            headers[TRACEPARENT], headers[HOPS_HEADER] = trace
        try:
            async with self.session.post(url, data=orjson.dumps(body), headers=headers) as response:
                raw = await response.read()
                status = response.status
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise CloudApiError(f"Cloud API unreachable at {url}: {type(exc).__name__}: {exc}") from exc
        try:
            data = orjson.loads(raw) if raw else {}
        except orjson.JSONDecodeError:
            data = None
        if status == 200 and isinstance(data, dict) and "error" not in data:
            return data
        return _raise(status, data)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


def _raise(status: int, data: Any) -> dict[str, Any]:
    raise CloudApiError.from_response(status, data)
