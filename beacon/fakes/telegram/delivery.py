"""Telegram's side of webhooks: POST each Update to the webhook with the secret header, in order,
redelivering the same Update (same ``update_id``) until the webhook answers 2xx.

Telegram gives up "after a reasonable amount of attempts"; here ``max_attempts`` (default 8) with
delays from ``retry_delay`` doubling up to ``max_delay``. Each failure is kept as the webhook's
``last_error_date`` / ``last_error_message``, as ``getWebhookInfo`` shows them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson

from beacon.gateway.telegram.auth import HEADER

log = logging.getLogger("beacon.fakes.telegram.delivery")

Json = dict[str, Any]


@dataclass
class Webhook:
    """The webhook set with ``setWebhook`` (an empty url: none)."""

    url: str = ""
    secret_token: str | None = None
    allowed_updates: list[str] = field(default_factory=list)
    last_error_date: int | None = None
    last_error_message: str | None = None


@dataclass
class Attempt:
    """One POST of an Update: its answer (None: no connection)."""

    update_id: int
    status: int | None
    at: float


class UpdateDelivery:
    """A queue of Updates delivered one at a time to ``webhook`` (read at each attempt)."""

    def __init__(self, webhook: Webhook, *, retry_delay: float = 0.2, max_delay: float = 5.0, max_attempts: int = 8,
                 timeout: float = 10.0) -> None:
        self.webhook = webhook
        self.retry_delay = retry_delay
        self.max_delay = max_delay
        self.max_attempts = max_attempts
        self.attempts: list[Attempt] = []
        self._queue: asyncio.Queue[tuple[Json, asyncio.Future[int | None]]] = asyncio.Queue()
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None
        self._task: asyncio.Task[None] | None = None
        self._busy = 0

    @property
    def pending(self) -> int:
        """Updates not yet delivered (``pending_update_count``)."""
        return self._queue.qsize() + self._busy

    def submit(self, update: Json) -> asyncio.Future[int | None]:
        """Queue ``update``; the future is the final answer's status (None: given up with no answer)."""
        done: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((update, done))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run())
        return done

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._session is not None:
            await self._session.close()

    async def _run(self) -> None:
        while True:
            update, done = await self._queue.get()
            self._busy = 1
            try:
                status = await self._deliver(update)
                if not done.done():
                    done.set_result(status)
            finally:
                self._busy = 0

    async def _deliver(self, update: Json) -> int | None:
        body = orjson.dumps(update)
        status: int | None = None
        for attempt in range(self.max_attempts):
            if attempt:
                await asyncio.sleep(min(self.max_delay, self.retry_delay * 2 ** (attempt - 1)))
            status = await self._post(body)
            self.attempts.append(Attempt(int(update["update_id"]), status, time.time()))
            if status is not None and 200 <= status < 300:
                return status
        log.warning("fake Bot API gave up on update %s after %d attempts (last answer: %s)", update["update_id"],
                    self.max_attempts, status or "no connection")
        return status

    async def _post(self, body: bytes) -> int | None:
        hook = self.webhook
        if not hook.url:
            hook.last_error_date, hook.last_error_message = int(time.time()), "no webhook is set"
            return None
        headers = {"Content-Type": "application/json"}
        if hook.secret_token:
            headers[HEADER] = hook.secret_token
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        try:
            async with self._session.post(hook.url, data=body, headers=headers) as response:
                await response.read()
                status = response.status
                reason = response.reason or ""
        except (aiohttp.ClientError, TimeoutError) as exc:
            hook.last_error_date = int(time.time())
            hook.last_error_message = f"Connection failed: {type(exc).__name__}"
            return None
        if not 200 <= status < 300:
            hook.last_error_date = int(time.time())
            hook.last_error_message = f"Wrong response from the webhook: {status} {reason}".rstrip()
        return status
