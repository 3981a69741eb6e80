"""A client of several Nostr relays over WebSockets: publish an event and wait for the relays' OK,
subscribe with filters, reconnect with backoff and re-subscribe, and hand each event on once.

A relay that is down only pauses itself: publishing succeeds when any relay accepts, and a relay
that returns is re-subscribed from a little before it went away, so what it stored meanwhile
still arrives (the same event from two relays, or again after a reconnect, is passed on once).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Coroutine
from typing import Any

import aiohttp

from beacon.backoff import backoff_delay
from beacon.errors import NostrError
from beacon.nostr.event import Event

log = logging.getLogger("beacon.nostr")

#: Seconds subtracted from the last time a relay was connected when re-subscribing (clock skew, late stores).
RESUBSCRIBE_MARGIN = 60
#: Event ids remembered to pass each event on once.
SEEN_LIMIT = 100_000

EventHandler = Callable[[Event, str], Coroutine[Any, Any, None]]


class _Relay:
    def __init__(self, url: str) -> None:
        self.url = url
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.connected = asyncio.Event()
        #: When the connection was last known alive (set on disconnect): re-subscribing starts a margin before it.
        self.last_alive: float | None = None
        self.pending: dict[str, asyncio.Future[tuple[bool, str]]] = {}


class RelayPool:
    """Connections to ``urls``; ``on_event(event, relay_url)`` gets each subscribed event once."""

    def __init__(self, urls: list[str], *, on_event: EventHandler | None = None,
                 filters: list[dict[str, Any]] | None = None, since: int | None = None,
                 retry_base: float = 0.2, retry_max: float = 5.0) -> None:
        if not urls:
            raise NostrError("no Nostr relays configured: set BEACON_NOSTR_RELAYS to a JSON list of ws:// URLs")
        self._relays = [_Relay(u) for u in urls]
        self._on_event = on_event
        self._filters = filters or []
        self._since = int(time.time()) - RESUBSCRIBE_MARGIN if since is None else since
        self._retry = (retry_base, retry_max)
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._tasks: list[asyncio.Task[None]] = []
        self._session: aiohttp.ClientSession | None = None
        self._handlers: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._session = aiohttp.ClientSession()
        self._tasks = [asyncio.create_task(self._run(r), name=f"nostr-relay {r.url}") for r in self._relays]

    async def wait_connected(self, timeout: float) -> None:
        """Return once every relay is connected and subscribed; NostrError after ``timeout``."""
        try:
            await asyncio.wait_for(asyncio.gather(*(r.connected.wait() for r in self._relays)), timeout)
        except TimeoutError as exc:
            down = [r.url for r in self._relays if not r.connected.is_set()]
            raise NostrError(f"Nostr relays {down} not reachable within {timeout:.0f}s") from exc

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for task in list(self._handlers):
            task.cancel()
        if self._session is not None:
            await self._session.close()

    async def publish(self, event: Event, timeout: float = 5.0) -> int:
        """Send ``event`` to every connected relay and wait for their OKs; the number that accepted (or already
        held it).

        NostrError when none is connected or none accepted."""
        live = [r for r in self._relays if r.connected.is_set() and r.ws is not None]
        if not live:
            raise NostrError(f"no Nostr relay connected (of {[r.url for r in self._relays]}); event {event.id} "
                             "not sent")
        loop = asyncio.get_running_loop()
        waits: list[asyncio.Future[tuple[bool, str]]] = []
        for relay in live:
            future: asyncio.Future[tuple[bool, str]] = loop.create_future()
            relay.pending[event.id] = future
            waits.append(future)
            try:
                assert relay.ws is not None
                await relay.ws.send_str(json.dumps(["EVENT", event.to_json()], ensure_ascii=False))
            except (aiohttp.ClientError, ConnectionError, RuntimeError) as exc:
                future.set_result((False, f"send failed: {exc}"))
        done, _ = await asyncio.wait(waits, timeout=timeout)
        results = [f.result() for f in done if not f.cancelled()]
        for relay in live:
            relay.pending.pop(event.id, None)
        # "duplicate:" (NIP-01): the relay already holds the event, which is what publishing wants.
        accepted = sum(1 for ok, why in results if ok or why.startswith("duplicate:"))
        if not accepted:
            reasons = [why for _, why in results] or ["no OK within the timeout"]
            raise NostrError(f"no Nostr relay accepted event {event.id}: {reasons}")
        return accepted

    # --- one relay -------------------------------------------------------------------------

    async def _run(self, relay: _Relay) -> None:
        attempt = 0
        down_since: float | None = None
        while True:
            try:
                assert self._session is not None
                async with self._session.ws_connect(relay.url, heartbeat=20, max_msg_size=0) as ws:
                    relay.ws = ws
                    await self._subscribe(relay)
                    relay.connected.set()
                    if down_since is not None:
                        log.info("Nostr relay %s is back after %.0fs", relay.url, time.monotonic() - down_since)
                        down_since = None
                    attempt = 0
                    await self._read(relay, ws)
            except asyncio.CancelledError:
                raise
            except (aiohttp.ClientError, ConnectionError, OSError, TimeoutError) as exc:
                if down_since is None:
                    down_since = time.monotonic()
                    log.warning("Nostr relay %s unreachable (%s); retrying with backoff", relay.url, exc)
            finally:
                if relay.connected.is_set():
                    relay.last_alive = time.time()
                relay.ws = None
                relay.connected.clear()
                for future in relay.pending.values():
                    if not future.done():
                        future.set_result((False, "connection lost"))
            if down_since is None:
                down_since = time.monotonic()
                log.warning("Nostr relay %s closed the connection; reconnecting", relay.url)
            attempt += 1
            await asyncio.sleep(backoff_delay(attempt, *self._retry))

    async def _subscribe(self, relay: _Relay) -> None:
        if not self._filters:
            return
        since = self._since if relay.last_alive is None else int(relay.last_alive) - RESUBSCRIBE_MARGIN
        filters = [{**f, "since": since} for f in self._filters]
        assert relay.ws is not None
        await relay.ws.send_str(json.dumps(["REQ", "beacon", *filters]))

    async def _read(self, relay: _Relay, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for msg in ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                if msg.type in (aiohttp.WSMsgType.ERROR, aiohttp.WSMsgType.CLOSE):
                    return
                continue
            try:
                frame = json.loads(msg.data)
            except json.JSONDecodeError:
                log.warning("Nostr relay %s sent a frame that is not JSON; ignored", relay.url)
                continue
            if not isinstance(frame, list) or not frame:
                continue
            if frame[0] == "EVENT" and len(frame) >= 3:
                self._deliver(frame[2], relay.url)
            elif frame[0] == "OK" and len(frame) >= 3:
                future = relay.pending.get(str(frame[1]))
                if future is None and not frame[2]:
                    # nostr-relay answers a refusal it hit an error on (a busy database, ...) with an empty id.
                    # It handles a connection's events in order, so the refusal is the oldest unanswered one's.
                    future = next((f for f in relay.pending.values() if not f.done()), None)
                if future is not None and not future.done():
                    future.set_result((bool(frame[2]), str(frame[3]) if len(frame) > 3 else ""))
            elif frame[0] == "NOTICE":
                log.info("Nostr relay %s says: %s", relay.url, frame[1:])
            elif frame[0] == "CLOSED":
                log.warning("Nostr relay %s closed our subscription: %s", relay.url, frame[1:])

    def _deliver(self, data: Any, url: str) -> None:
        try:
            event = Event.from_json(data)
        except ValueError as exc:
            log.warning("Nostr relay %s sent a malformed event (%s); ignored", url, exc)
            return
        if event.id in self._seen:
            return
        # Only a verified event is remembered: a forged copy of an id must not hide the real event.
        if event.verify():
            self._seen[event.id] = None
            if len(self._seen) > SEEN_LIMIT:
                self._seen.popitem(last=False)
        if self._on_event is None:
            return
        task = asyncio.create_task(self._on_event(event, url))
        self._handlers.add(task)
        task.add_done_callback(self._handlers.discard)
