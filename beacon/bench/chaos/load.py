"""The chaos bench's steady load: simulated users writing signed webhooks, and the account of their replies.

Each user writes in turn (the next message once the gateway acknowledged the previous one, like a person
typing), so per-user order is well defined. A webhook the gateway does not acknowledge (503 while the
broker is down, no connection while the gateway restarts) is redelivered with the same body, hence the
same message id, like Meta redelivers, until it is acknowledged or the load is told to give up.
The replies are read from the fake Cloud API's record of sends (``/_fake/sent``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field

import aiohttp
import httpx

from beacon.backoff import backoff_delay
from beacon.fakes.whatsapp import payloads as p
from beacon.fakes.whatsapp.driver import WebhookDriver


@dataclass
class Offer:
    """One message a user wrote: when, when the gateway acknowledged it, how many POSTs it took."""

    user: str
    number: int
    offered_at: float
    acked_at: float | None = None
    posts: int = 0


@dataclass
class Reply:
    """One send the fake Cloud API recorded for a bench message."""

    seq: int
    at: float


@dataclass
class Ledger:
    """Everything offered and answered so far, by token (``<run>:<user>:<n>``)."""

    offers: dict[str, Offer] = field(default_factory=dict)
    replies: dict[str, list[Reply]] = field(default_factory=lambda: defaultdict(list))
    last_seq: int = 0

    def answered(self, token: str) -> bool:
        return bool(self.replies.get(token))

    def first_reply(self, token: str) -> float | None:
        got = self.replies.get(token)
        return got[0].at if got else None


class SteadyLoad:
    """Paces ``rate`` messages/s from ``users`` users into a gateway and follows the replies at the fake."""

    def __init__(self, gateway_url: str, fake_url: str, app_secret: str | None, phone_number_id: str, *,
                 rate: float, users: int) -> None:
        self.gateway_url = gateway_url
        self.fake_url = fake_url.rstrip("/")
        self.rate = rate
        self.users = users
        self.prefix = f"chaos{uuid.uuid4().hex[:6]}:"
        self.ledger = Ledger()
        self.driver = WebhookDriver(gateway_url, app_secret, phone_number_id, timeout=10.0)
        self._queues: list[asyncio.Queue[str | None]] = [asyncio.Queue() for _ in range(users)]
        self._offering = asyncio.Event()
        self._give_up = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    # --- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        async with httpx.AsyncClient(timeout=10) as client:
            self.ledger.last_seq = int((await client.get(f"{self.fake_url}/_fake/stats")).json()["last_seq"])
        self._offering.set()
        self._tasks = [asyncio.create_task(self._collect()), asyncio.create_task(self._pace())]
        self._tasks += [asyncio.create_task(self._user(i)) for i in range(self.users)]

    async def stop_offering(self, timeout: float) -> None:
        """Stop writing new messages; wait up to ``timeout`` for the users' last ones to be acknowledged."""
        self._offering.clear()
        for queue in self._queues:
            queue.put_nowait(None)
        users = self._tasks[2:]
        _, pending = await asyncio.wait(users, timeout=timeout) if users else (set(), set())
        if pending:
            self._give_up.set()
            await asyncio.wait(pending, timeout=15)

    async def close(self) -> None:
        self._offering.clear()
        self._give_up.set()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.driver.aclose()

    # --- the users ----------------------------------------------------------------------------

    async def _pace(self) -> None:
        started = time.monotonic()
        i = 0
        while self._offering.is_set():
            delay = started + i / self.rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            if not self._offering.is_set():
                return
            index = i % self.users
            user = f"4477009{index:05d}"
            number = i // self.users
            token = f"{self.prefix}{user}:{number}"
            self.ledger.offers[token] = Offer(user, number, time.time())
            self._queues[index].put_nowait(token)
            i += 1

    async def _user(self, index: int) -> None:
        queue = self._queues[index]
        while (token := await queue.get()) is not None:
            offer = self.ledger.offers[token]
            body = p.encode(p.text_webhook(offer.user, f"chaos {token}", phone_number_id=self.driver.phone_number_id,
                                           wamid=p.new_wamid()))
            attempt = 0
            while not self._give_up.is_set():
                attempt += 1
                offer.posts += 1
                try:
                    status = await self.driver.post_once(body)
                except (aiohttp.ClientError, TimeoutError):
                    status = None
                if status == 200:
                    offer.acked_at = time.time()
                    break
                # Redelivered like Meta (the same body, so the same message id), sooner than Meta's minutes.
                await asyncio.sleep(backoff_delay(attempt, 0.2, 2.0))
            if offer.acked_at is None:
                return

    async def _collect(self) -> None:
        """Follow the fake's record of sends, keeping those that answer this load's messages."""
        async with httpx.AsyncClient(timeout=15) as client:
            while True:
                try:
                    response = await client.get(f"{self.fake_url}/_fake/sent",
                                                params={"after": self.ledger.last_seq, "wait": 0.5})
                    items = response.json()
                except (httpx.HTTPError, ValueError):
                    await asyncio.sleep(0.2)
                    continue
                for sent in items:
                    self.ledger.last_seq = max(self.ledger.last_seq, int(sent["seq"]))
                    text = ((sent.get("body") or {}).get("text") or {}).get("body") or ""
                    marker = text.rfind(self.prefix)
                    if marker >= 0:
                        token = text[marker:].split()[0]
                        self.ledger.replies[token].append(Reply(int(sent["seq"]), float(sent["received_at"])))

    # --- questions the bench asks --------------------------------------------------------------

    def drained_before(self, moment: float) -> bool:
        """True when every message offered before ``moment`` (wall clock) is acknowledged and answered."""
        for token, offer in self.ledger.offers.items():  # in the order offered
            if offer.offered_at > moment:
                return True
            if offer.acked_at is None or not self.ledger.answered(token):
                return False
        return True

    def unanswered(self) -> int:
        """Acknowledged messages without a reply yet."""
        return sum(1 for t, o in self.ledger.offers.items() if o.acked_at is not None and not self.ledger.answered(t))

    async def fake_caught_up(self) -> bool:
        """True when the collector has read every send the fake recorded."""
        async with httpx.AsyncClient(timeout=10) as client:
            stats = (await client.get(f"{self.fake_url}/_fake/stats")).json()
        return int(stats["last_seq"]) <= self.ledger.last_seq
