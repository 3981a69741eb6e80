"""Delivers outbox events after their turn committed: to BEACON_OUTBOX_CALLBACK (an async function)
or BEACON_OUTBOX_URL (HTTP POST), at least once, marking each done. A claimed event is leased for
BEACON_OUTBOX_TIMEOUT, so several API processes never deliver one event at the same time; a failed
delivery is retried with the shared backoff policy, however long the receiver stays down."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import inspect
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

import httpx
import orjson
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from beacon.api.models import Message, OutboxEvent
from beacon.api.store import utc
from beacon.backoff import backoff_delay
from beacon.bot.outbox import OutboxItem
from beacon.config import Settings
from beacon.errors import BeaconError, ConfigError
from beacon.messages import utcnow
from beacon.trace import TRACEPARENT, new_span_id, traceparent

log = logging.getLogger(__name__)

#: Undelivered events read per look at the table (the oldest of each user among them is tried).
SCAN = 500

Sink = Callable[[OutboxItem], Awaitable[None]]


class OutboxDeliveryError(BeaconError):
    """The outbox receiver refused or failed an event; it is retried with backoff."""


def make_sink(settings: Settings) -> tuple[Sink, str] | None:
    """The configured receiver and its name for logs, or None when neither setting is given."""
    if settings.outbox.callback:
        module_name, _, attribute = settings.outbox.callback.partition(":")
        try:
            fn = getattr(importlib.import_module(module_name), attribute)
        except (ImportError, AttributeError, ValueError) as exc:
            raise ConfigError(
                f"BEACON_OUTBOX_CALLBACK {settings.outbox.callback!r} could not be imported: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        if not inspect.iscoroutinefunction(fn):
            raise ConfigError(f"BEACON_OUTBOX_CALLBACK {settings.outbox.callback!r} is not an async function")
        return fn, settings.outbox.callback
    if settings.outbox.url:
        url, timeout = settings.outbox.url, settings.outbox.timeout

        async def post(item: OutboxItem) -> None:
            headers = {"Idempotency-Key": item.id}
            if item.trace_id:  # the turn's trace goes on to the receiver (beacon.trace)
                headers[TRACEPARENT] = traceparent(item.trace_id, new_span_id())
            async with httpx.AsyncClient(timeout=timeout) as http:
                resp = await http.post(url, json=item.as_json(), headers=headers)
            if not 200 <= resp.status_code < 300:
                raise OutboxDeliveryError(f"HTTP {resp.status_code}: {resp.text[:200]}")

        return post, url
    return None


class OutboxDelivery:
    """The background task delivering due outbox events; ``wake()`` after a turn recorded some."""

    def __init__(self, settings: Settings, engine: AsyncEngine, sink: Sink, sink_name: str) -> None:
        self.settings = settings
        self.engine = engine
        self.sink = sink
        self.sink_name = sink_name
        self.delivered = 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._failing = False

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="beacon-api-outbox")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def wake(self) -> None:
        self._wake.set()

    async def _run(self) -> None:
        while True:
            try:
                busy = await self.deliver_due()
            except Exception as exc:  # the database is away: look again later, said once per outage
                if not self._failing:
                    log.warning("outbox delivery paused: cannot read the outbox table (%s: %s); retrying every "
                                "%.1fs", type(exc).__name__, exc, self.settings.outbox.poll_interval)
                    self._failing = True
                busy = False
            if busy:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.settings.outbox.poll_interval)
            self._wake.clear()

    async def deliver_due(self) -> bool:
        """Deliver each user's oldest undelivered event if it is due; True when the look found a full
        scan (more may wait). One user's events go out in the order recorded: a failing event holds
        back that user's later ones, never another user's."""
        now = utcnow()
        async with self.engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(OutboxEvent)
                    .where(OutboxEvent.done_at.is_(None))
                    .order_by(OutboxEvent.created_at, OutboxEvent.id)
                    .limit(SCAN)
                )
            ).all()
        heads: dict[str, Any] = {}
        for row in rows:
            heads.setdefault(row.user_key, row)
        due = [row for row in heads.values() if utc(row.due_at) <= now]
        traces = await self._traces({row.message_id for row in due}) if due else {}
        delivered = 0
        for row in due:
            item = OutboxItem(
                id=row.id, kind=row.kind, data=orjson.loads(row.payload), message_id=row.message_id,
                user_key=row.user_key, created_at=utc(row.created_at), attempts=row.attempts,
                trace_id=traces.get(row.message_id),
            )
            if await self._claim(item.id, now) and await self._deliver(item):
                delivered += 1
        return delivered > 0 and len(rows) == SCAN

    async def _traces(self, message_ids: set[str]) -> dict[str, str]:
        """The trace id of each message (stored with its turn), by message id."""
        async with self.engine.connect() as conn:
            rows = await conn.execute(select(Message.id, Message.body).where(Message.id.in_(sorted(message_ids))))
            found = {row.id: orjson.loads(row.body).get("trace_id") for row in rows}
        return {mid: str(trace) for mid, trace in found.items() if trace}

    async def _claim(self, event_id: str, now: datetime) -> bool:
        lease_end = utcnow() + timedelta(seconds=self.settings.outbox.timeout * 2)
        async with self.engine.begin() as conn:
            result = await conn.execute(
                update(OutboxEvent)
                .where(OutboxEvent.id == event_id, OutboxEvent.done_at.is_(None), OutboxEvent.due_at <= now)
                .values(due_at=lease_end)
            )
        return result.rowcount == 1

    async def _deliver(self, item: OutboxItem) -> bool:
        try:
            await asyncio.wait_for(self.sink(item), self.settings.outbox.timeout)
        except Exception as exc:  # the receiver's failure: retried with backoff, said once per outage
            attempts = item.attempts + 1
            delay = backoff_delay(attempts, self.settings.outbox.retry_base_delay, self.settings.outbox.retry_max_delay)
            error = f"{type(exc).__name__}: {exc}"
            if not self._failing:
                log.warning(
                    "outbox delivery to %s failing: event %s (%s) of message %s, user %s: %s; retrying with backoff "
                    "(events wait in table outbox; fix the receiver)",
                    self.sink_name, item.id, item.kind, item.message_id, item.user_key, error,
                )
                self._failing = True
            async with self.engine.begin() as conn:
                await conn.execute(
                    update(OutboxEvent)
                    .where(OutboxEvent.id == item.id)
                    .values(attempts=attempts, last_error=error[:1000], due_at=utcnow() + timedelta(seconds=delay))
                )
            return False
        async with self.engine.begin() as conn:
            await conn.execute(
                update(OutboxEvent)
                .where(OutboxEvent.id == item.id)
                .values(done_at=utcnow(), attempts=item.attempts + 1)
            )
        self.delivered += 1
        if self._failing:
            log.info("outbox delivery to %s works again (event %s delivered)", self.sink_name, item.id)
            self._failing = False
        return True
