"""The bridge's outbound side: records of a local topic sent to peers over NostrMQ, each re-sent
with backoff until the peer acknowledges it, the offset committed only after that.

Per user key one message is on its way at a time (the next leaves once the previous is
acknowledged), so a conversation keeps its order across relays that reorder; different users run
concurrently (``BEACON_NOSTR_BRIDGE_MAX_IN_FLIGHT``). The keyed lanes and in-order commits are the
workers' :class:`~beacon.lanes.KeyedDispatcher`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from beacon.backoff import backoff_delay
from beacon.bridge.payload import Topic, message_payload
from beacon.bridge.routes import Routes
from beacon.codec import MessageCodec, retry_registry
from beacon.config import Settings
from beacon.dlq import dead_letter
from beacon.errors import BadMessageError, BeaconError, KafkaError
from beacon.kafka import (
    AsyncProducer,
    Consumer,
    KafkaException,
    Message,
    TopicPartition,
    fetch_batch,
    make_consumer,
)
from beacon.lanes import Job, KeyedDispatcher
from beacon.messages import BeaconMessage

log = logging.getLogger("beacon.bridge")

Send = Callable[[str, Any], Awaitable[None]]
#: Seconds between offset commits.
COMMIT_INTERVAL = 0.5
#: Seconds a rebalance or shutdown lets messages awaiting acknowledgement finish.
DRAIN_TIMEOUT = 5.0


class Forwarder:
    """Consumes ``source`` (carried as ``topic`` "in" or "out") and sends each routed message to its peer."""

    def __init__(self, settings: Settings, source: str, topic: Topic, routes: Routes, *, codec: MessageCodec,
                 send: Send) -> None:
        self._settings = settings
        self._source = source
        self._topic = topic
        self._routes = routes
        self._codec = codec
        self._send = send
        self._acks: dict[str, asyncio.Future[None]] = {}
        self._dispatcher = KeyedDispatcher(self._handle, lambda _job: None, settings.bridge.max_in_flight)
        self._committed: dict[tuple[str, int], int] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._producer: AsyncProducer | None = None
        self._unacked_since: float | None = None
        #: Messages acknowledged by their peer, re-sends, and records left here (not routed, or dead-lettered).
        self.acknowledged = 0
        self.resends = 0
        self.skipped = 0

    def acknowledged_by_peer(self, message_id: str) -> None:
        """The receiver saw an ack: wake the sender waiting for it (a late or repeated ack is ignored)."""
        future = self._acks.get(message_id)
        if future is not None and not future.done():
            future.set_result(None)

    # --- one message -------------------------------------------------------------------------

    async def _handle(self, job: Job) -> None:
        record: Message = job.payload
        try:
            msg = await retry_registry(self._codec.decode, record.value(), topic=self._source,
                                       partition=record.partition() or 0, offset=record.offset() or 0)
        except BadMessageError as exc:
            self.skipped += 1
            await self._dead_letter(record, exc)
            return
        peer = self._routes.peer_for(msg.user_key)
        if peer is None:
            self.skipped += 1
            return
        await self._send_until_acked(peer, msg)

    async def _dead_letter(self, record: Message, error: BadMessageError) -> None:
        """Bytes that are no BeaconMessage cannot cross: to bm_dlq, waiting out a broker outage."""
        assert self._producer is not None
        attempt = 0
        while True:
            attempt += 1
            try:
                await dead_letter(self._producer, self._settings, key=record.key(), value=record.value(),
                                  topic=self._source, partition=record.partition() or 0, offset=record.offset() or 0,
                                  error=error, attempts=1, origin="bridge-nostr")
                return
            except BeaconError as exc:
                if isinstance(exc, KafkaError) and not exc.retryable:
                    raise  # bm_dlq refuses it every time (credentials, authorization): stop with the reason
                if attempt == 1:
                    log.warning("cannot dead-letter %s (%s); retrying with backoff", error, exc)
                await asyncio.sleep(backoff_delay(attempt, self._settings.bridge.retry_base_delay,
                                                  self._settings.bridge.retry_max_delay))

    async def _send_until_acked(self, peer: str, msg: BeaconMessage) -> None:
        settings = self._settings
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._acks[msg.id] = future
        payload = message_payload(self._topic, msg)
        attempt = 0
        try:
            while True:
                attempt += 1
                try:
                    await self._send(peer, payload)
                    await asyncio.wait_for(asyncio.shield(future), settings.bridge.ack_timeout)
                    break
                except (BeaconError, TimeoutError) as exc:
                    self.resends += 1
                    if self._unacked_since is None:
                        self._unacked_since = time.monotonic()
                        why = "no acknowledgement" if isinstance(exc, TimeoutError) else str(exc)
                        log.warning("message %s of user %s to peer %s: %s after attempt %d; re-sending with backoff "
                                    "until acknowledged (is the peer's bridge running and the relay reachable?)",
                                    msg.id, msg.user_key, peer, why, attempt)
                await asyncio.sleep(backoff_delay(attempt, settings.bridge.retry_base_delay,
                                                  settings.bridge.retry_max_delay))
        finally:
            self._acks.pop(msg.id, None)
        self.acknowledged += 1
        if self._unacked_since is not None and attempt == 1:
            log.info("peers acknowledge again (they had not for %.0fs)", time.monotonic() - self._unacked_since)
            self._unacked_since = None

    # --- the consumer loop --------------------------------------------------------------------

    async def run(self, stop: asyncio.Event, producer: AsyncProducer) -> None:
        """Consume, dispatch and commit until ``stop`` is set; then let in-flight messages finish briefly.
        ``producer`` dead-letters records that are no BeaconMessage."""
        self._loop = asyncio.get_running_loop()
        self._producer = producer
        consumer = make_consumer(self._settings, self._settings.bridge.group)
        consumer.subscribe([self._source], on_revoke=self._on_revoke, on_lost=self._on_revoke)
        last_commit = time.monotonic()
        try:
            while not stop.is_set():
                records = await asyncio.to_thread(fetch_batch, consumer, 500, 0.2)
                for record in records:
                    if record.error() is not None:
                        log.warning("consuming %s: %s", self._source, record.error())
                        continue
                    key = record.key() or f"partition-{record.partition()}".encode()
                    job = Job(key, (self._source, record.partition()), record.offset() or 0, record)
                    if not await _unless_stopped(self._dispatcher.submit(job), stop):
                        break  # not submitted: read again from the committed offset next time
                if time.monotonic() - last_commit >= COMMIT_INTERVAL:
                    await asyncio.to_thread(self._commit, consumer, self._dispatcher.committable())
                    last_commit = time.monotonic()
            offsets = await self._dispatcher.drain(None, DRAIN_TIMEOUT)
            await asyncio.to_thread(self._commit, consumer, offsets)
        finally:
            await asyncio.to_thread(consumer.close)

    def _commit(self, consumer: Consumer, offsets: dict[Any, int]) -> None:
        changed = [TopicPartition(t, p, o) for (t, p), o in offsets.items() if self._committed.get((t, p)) != o]
        if not changed:
            return
        try:
            consumer.commit(offsets=changed, asynchronous=False)
        except KafkaException as exc:  # the next commit carries the same offsets
            log.warning("committing offsets of %s failed (%s); will try again", self._source, exc)
            return
        for tp in changed:
            self._committed[(tp.topic, tp.partition)] = tp.offset

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Runs in the polling thread: let the event loop drain those partitions, then commit what finished."""
        if self._loop is None or not partitions:
            return
        wanted = [(tp.topic, tp.partition) for tp in partitions]
        future = asyncio.run_coroutine_threadsafe(self._dispatcher.drain(wanted, DRAIN_TIMEOUT), self._loop)
        offsets = future.result(timeout=DRAIN_TIMEOUT + 5)
        self._commit(consumer, offsets)
        for key in wanted:
            self._committed.pop(key, None)


async def _unless_stopped(work: Coroutine[Any, Any, None], stop: asyncio.Event) -> bool:
    """Await ``work`` unless ``stop`` is set first (then cancel it and return False): a submit that waits for a
    free slot while every slot waits for a peer's acknowledgement must not hold the bridge past SIGTERM."""
    task = asyncio.ensure_future(work)
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
    if task.done():
        task.result()
        return True
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return False
