"""Meta's side of webhooks: sign payloads and POST them to a gateway, retrying non-200 answers.

One aiohttp session per driver (connection reuse; aiohttp's client costs a fraction of httpx's CPU
per request), so a benchmark can drive a thousand webhooks per second from one process without
the load generator becoming the bottleneck on a small machine.
"""

from __future__ import annotations

import asyncio
import logging
import random
from types import TracebackType
from typing import Any

import aiohttp

from beacon.errors import BeaconError
from beacon.fakes.whatsapp import payloads as p
from beacon.gateway.whatsapp.signature import HEADER, sign

log = logging.getLogger("beacon.fakes.whatsapp.driver")

WEBHOOK_PATH = "/webhooks/whatsapp"


class WebhookDeliveryError(BeaconError):
    """The gateway did not answer 200 to a webhook, even after retries."""

    def __init__(self, message: str, status: int | None) -> None:
        super().__init__(message)
        self.status = status


def webhook_url(gateway_url: str) -> str:
    """The webhook endpoint of a gateway given its base URL (or the endpoint itself)."""
    url = gateway_url.rstrip("/")
    return url if url.endswith(WEBHOOK_PATH) else url + WEBHOOK_PATH


class WebhookDriver:
    """Signs Cloud API notifications and POSTs them to a gateway like Meta does.

    Non-200 answers and connection errors are retried (immediately, then with growing delays)
    up to ``max_attempts`` times; ``retry_delay`` scales the delays (Meta's are minutes). ``timeout``
    bounds connecting and waiting for the gateway's answer: an attempt that gets no answer within it has
    failed. A webhook waiting for one of the driver's own ``connections`` (256) is not yet an attempt (Meta
    queues its deliveries too), so an overloaded gateway shows as latency, not as webhooks given up.
    """

    def __init__(
        self,
        gateway_url: str,
        app_secret: str | None,
        phone_number_id: str = p.DEFAULT_PHONE_NUMBER_ID,
        *,
        max_attempts: int = 5,
        retry_delay: float = 0.2,
        timeout: float = 10.0,
        connections: int = 256,
        client: aiohttp.ClientSession | None = None,
    ) -> None:
        self.url = webhook_url(gateway_url)
        self.app_secret = app_secret
        self.phone_number_id = phone_number_id
        self.max_attempts = max_attempts
        self.retry_delay = retry_delay
        self._own_client = client is None
        self._client = client
        self._timeout = aiohttp.ClientTimeout(total=None, sock_connect=timeout, sock_read=timeout)
        self._connections = connections

    async def __aenter__(self) -> WebhookDriver:
        return self

    async def __aexit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._own_client and self._client is not None:
            await self._client.close()
            self._client = None

    async def post_once(self, body: bytes, *, signature: str | bool | None = True) -> int:
        """One POST; ``signature`` True signs with the app secret, a string sends that header, None none."""
        headers = {"Content-Type": "application/json"}
        if signature is True:
            if self.app_secret:
                headers[HEADER] = sign(body, self.app_secret)
        elif isinstance(signature, str):
            headers[HEADER] = signature
        if self._client is None:  # created here: a session belongs to the running event loop
            self._client = aiohttp.ClientSession(timeout=self._timeout,
                                                 connector=aiohttp.TCPConnector(limit=self._connections))
        async with self._client.post(self.url, data=body, headers=headers) as response:
            await response.read()
            return response.status

    async def post(self, payload: dict[str, Any] | bytes, *, retry: bool = True) -> int:
        """POST a notification, retrying non-200 answers like Meta; returns the last status.

        Raises WebhookDeliveryError when every attempt failed.
        """
        body = payload if isinstance(payload, bytes) else p.encode(payload)
        status: int | None = None
        attempts = self.max_attempts if retry else 1
        for attempt in range(attempts):
            if attempt:
                await asyncio.sleep(self.retry_delay * (2 ** (attempt - 1)))
            try:
                status = await self.post_once(body)
            except (aiohttp.ClientError, TimeoutError) as exc:
                log.debug("webhook POST to %s failed: %s", self.url, exc)
                status = None
                continue
            if status == 200:
                return status
        raise WebhookDeliveryError(f"gateway at {self.url} did not accept a webhook after {attempts} attempts "
                                   f"(last answer: {status or 'no connection'})", status)

    async def send_text(self, from_: str, text: str, name: str | None = None) -> str:
        """A user writes ``text``; returns the message's wamid once the gateway answered 200."""
        wamid = p.new_wamid()
        await self.post(p.text_webhook(from_, text, name=name, phone_number_id=self.phone_number_id, wamid=wamid))
        return wamid

    async def send_message(self, from_: str, mtype: str, body: Any, name: str | None = None,
                           context: dict[str, Any] | None = None) -> str:
        """A user sends a message of any type (``body`` is the object named after the type)."""
        msg = p.message(from_, mtype, body, context=context)
        await self.post(p.envelope([p.value(phone_number_id=self.phone_number_id,
                                            contacts=[p.contact(from_, name)], messages=[msg])]))
        return str(msg["id"])

    async def send_status(self, wamid: str, status: str, recipient: str, *, errors: list[dict[str, Any]] | None = None,
                          opaque: str | None = None) -> int:
        """A delivery status of a message the business sent."""
        return await self.post(p.status_webhook(wamid, status, recipient, phone_number_id=self.phone_number_id,
                                                errors=errors, opaque=opaque))

    async def deliver(self, values: list[dict[str, Any]], *, batch: int = 1, duplicates: float = 0.0,
                      shuffle: bool = False, seed: int | None = None) -> int:
        """Deliver change values like Meta: ``batch`` per POST, a share ``duplicates`` of POSTs
        redelivered, in shuffled order if asked. Returns the number of POSTs made."""
        rng = random.Random(seed)
        bodies = [p.encode(p.envelope(values[i:i + batch])) for i in range(0, len(values), batch)]
        bodies += [b for b in bodies if rng.random() < duplicates]
        if shuffle:
            rng.shuffle(bodies)
        for body in bodies:
            await self.post(body)
        return len(bodies)
