"""The worker's client of the API layer: ``POST /v1/messages/process`` (see CONTRACTS.md).

One aiohttp session with a bounded connection pool; each call carries the service token and the
message id as idempotency key. Failures are classified: 4xx (except 408/429) are permanent and the
message is dead-lettered at once; 5xx, 408, 429, timeouts and connection errors are retryable.
"""

from __future__ import annotations

import asyncio
import json
import random

import aiohttp
from pydantic import ValidationError

from beacon.config import Settings
from beacon.errors import BeaconError
from beacon.messages import BeaconMessage

PROCESS_PATH = "/v1/messages/process"
RETRYABLE_4XX = frozenset({408, 425, 429})


class ApiError(BeaconError):
    """The API layer did not process a message; ``retryable`` says whether trying again may help."""

    def __init__(self, text: str, *, retryable: bool, status: int | None = None) -> None:
        super().__init__(text)
        self.retryable = retryable
        self.status = status
        #: API calls made for the message so far (set by the processor's retry loop).
        self.attempts = 1


def backoff_delay(attempt: int, base: float, cap: float) -> float:
    """Delay before retry number ``attempt`` (1-based): exponential with full jitter, capped."""
    return random.uniform(0, min(cap, base * (2 ** (attempt - 1))))


class ApiClient:
    """Calls the API's processing endpoint and returns the replies as BeaconMessages."""

    def __init__(self, settings: Settings) -> None:
        self._url = settings.api_url.rstrip("/") + PROCESS_PATH
        self._token = settings.api_token.get_secret_value()
        self._timeout = aiohttp.ClientTimeout(total=settings.worker_api_timeout)
        self._limit = settings.worker_api_connections or settings.worker_max_in_flight
        self._session: aiohttp.ClientSession | None = None

    def _ensure_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self._limit, limit_per_host=self._limit, keepalive_timeout=30)
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=self._timeout, json_serialize=json.dumps
            )
        return self._session

    async def process(self, msg: BeaconMessage) -> list[BeaconMessage]:
        """Have the API process ``msg``; raises ApiError (retryable or not)."""
        session = self._ensure_session()
        headers = {
            "Authorization": f"Bearer {self._token}",
            "Idempotency-Key": msg.id,
            "Content-Type": "application/json",
        }
        try:
            async with session.post(self._url, data=msg.model_dump_json(), headers=headers) as resp:
                status = resp.status
                body = await resp.read()
        except TimeoutError as exc:
            raise ApiError(f"the API at {self._url} did not answer within {self._timeout.total}s",
                           retryable=True) from exc
        except aiohttp.ClientError as exc:
            raise ApiError(f"cannot reach the API at {self._url}: {exc}", retryable=True) from exc
        except asyncio.CancelledError:
            raise
        if status == 200:
            try:
                data = json.loads(body)
                return [BeaconMessage.model_validate(r) for r in data.get("replies", [])]
            except (ValueError, AttributeError, ValidationError) as exc:
                raise ApiError(f"the API answered 200 with a body that is not a process result: {exc}",
                               retryable=True, status=status) from exc
        detail = body[:300].decode("utf-8", "replace")
        retryable = status >= 500 or status in RETRYABLE_4XX
        raise ApiError(f"the API answered {status}: {detail}", retryable=retryable, status=status)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
