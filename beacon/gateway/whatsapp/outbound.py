"""bm_out to the Cloud API: the gateway's sender.

One consumer (group BEACON_GATEWAY_GROUP) feeds a queue per user key; each key's messages are sent
strictly in order while keys run concurrently (bounded by BEACON_GATEWAY_MAX_IN_FLIGHT). Errors
are handled by Cloud API code: 131056 backs off that user, throughput errors slow the number, 190
pauses the number and alerts, permanent errors go to bm_dlq with a ``failed`` status on bm_in.
Transient and unknown errors (5xx, timeouts, refused connections, 131000) pause the number and probe
it with one send at a time while nothing to it succeeds (an outage: waited out, nothing dead-lettered);
when they repeat for one message while others to the number succeed, that message is given up after
BEACON_WHATSAPP_RETRY_MAX_ATTEMPTS. An unexpected error is retried BEACON_GATEWAY_MAX_ATTEMPTS times.
Each id is settled once in the durable SentStore (a record redriven from bm_dlq is sent again unless
it was SENT); offsets are committed only up to settled records.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import Any

from beacon.codec import MessageCodec, retry_registry
from beacon.config import Settings
from beacon.errors import BadMessageError, RegistryUnavailableError
from beacon.gateway.whatsapp import CHANNEL
from beacon.gateway.whatsapp.client import CloudApiClient
from beacon.gateway.whatsapp.errors import Action, CloudApiError
from beacon.gateway.whatsapp.failures import Abandoned, FailureReporter, redriven_from, where
from beacon.gateway.whatsapp.limiter import Gate, TokenBucket, sleep_unless_stopped, wait_for_gate
from beacon.gateway.whatsapp.metrics import (
    LIMITER_WAIT,
    OUTAGES,
    POSSIBLE_DUPLICATES,
    SEND_ERRORS,
    SEND_SECONDS,
    SENDS,
)
from beacon.gateway.whatsapp.offsets import TP, OffsetTracker
from beacon.gateway.whatsapp.sends import UnsendableMessageError, build_request
from beacon.gateway.whatsapp.store import FAILED, SENDING, SENT, SentStore
from beacon.kafka import AsyncProducer, Consumer, KafkaException, Message, TopicPartition, fetch_batch, make_consumer
from beacon.messages import OUTBOUND, BeaconMessage
from beacon.streams.client import backoff_delay

log = logging.getLogger("beacon.gateway.whatsapp.outbound")

COMMIT_INTERVAL = 0.2  # seconds between offset commits while records settle
PRUNE_INTERVAL = 3600.0  # seconds between prunes of settled ids older than bm_out's retention
#: Errors that may mean the Cloud API is down for a number rather than refusing one message.
OUTAGE_ACTIONS = frozenset({Action.RETRY, Action.RETRY_FEW})


class Outbound:
    """The sending half of the gateway."""

    def __init__(self, settings: Settings, producer: AsyncProducer, codec: MessageCodec, store: SentStore,
                 client: CloudApiClient) -> None:
        self.settings = settings
        self.producer = producer
        self.codec = codec
        self.store = store
        self.client = client
        self.topic = settings.topic_out
        self.tracker = OffsetTracker()
        self.stop_event = asyncio.Event()
        self.slots = asyncio.Semaphore(settings.gateway_max_in_flight)
        self._queues: dict[bytes, deque[Message]] = {}
        self._workers: dict[bytes, asyncio.Task[None]] = {}
        self._numbers: dict[str, Gate] = {}
        self._users: dict[str, Gate] = {}
        self._consumer: Consumer | None = None
        self._paused = False
        self.finished = asyncio.Event()
        self.failures = FailureReporter(settings, producer, codec, store, self.stop_event)

    # --- consuming ------------------------------------------------------------------------------

    async def run(self) -> None:
        """Consume bm_out until ``stop()``; then finish in-flight sends and commit."""
        consumer = make_consumer(self.settings, self.settings.gateway_group)
        self._consumer = consumer
        consumer.subscribe([self.topic], on_revoke=self._on_revoke, on_lost=self._on_lost)
        last_commit = last_prune = time.monotonic()
        try:
            while not self.stop_event.is_set():
                self._apply_backpressure(consumer)
                records = await asyncio.to_thread(fetch_batch, consumer, 500, 0.1)
                for record in records:
                    err = record.error()
                    if err is not None:
                        log.warning("consuming %s: %s", self.topic, err)
                        continue
                    self._dispatch(record)
                if time.monotonic() - last_commit >= COMMIT_INTERVAL:
                    self._commit(consumer, asynchronous=True)
                    last_commit = time.monotonic()
                if time.monotonic() - last_prune >= PRUNE_INTERVAL:
                    self.store.prune(self.settings.topic_retention_ms / 1000)
                    last_prune = time.monotonic()
        finally:
            await self._drain()
            self._commit(consumer, asynchronous=False)
            await asyncio.to_thread(consumer.close)
            self.finished.set()

    def stop(self) -> None:
        self.stop_event.set()

    def _apply_backpressure(self, consumer: Consumer) -> None:
        over = self.tracker.in_flight >= self.settings.gateway_max_pending
        if over != self._paused:
            assignment = consumer.assignment()
            (consumer.pause if over else consumer.resume)(assignment)
            self._paused = over

    async def _drain(self) -> None:
        workers = list(self._workers.values())
        if not workers:
            return
        _done, pending = await asyncio.wait(workers, timeout=self.settings.gateway_shutdown_timeout)
        for task in pending:
            task.cancel()
        if pending:
            log.warning("shutdown: %d user queue(s) did not finish in %.0fs; their messages are redelivered at the "
                        "next start", len(pending), self.settings.gateway_shutdown_timeout)

    def _commit(self, consumer: Consumer, *, asynchronous: bool, tps: list[TP] | None = None) -> None:
        offsets = self.tracker.committable(tps)
        if not offsets:
            return
        try:
            commits = [TopicPartition(t, p, o) for (t, p), o in offsets.items()]
            if asynchronous:
                consumer.commit(offsets=commits, asynchronous=True)
            else:
                consumer.commit(offsets=commits, asynchronous=False)
            self.tracker.mark_committed(offsets)
        except KafkaException as exc:  # the next commit carries the same offsets
            log.warning("committing offsets of %s failed (%s); will retry", self.topic, exc)

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        tps = [(p.topic, p.partition) for p in partitions]
        self._commit(consumer, asynchronous=False, tps=tps)
        self.tracker.forget(tps)

    def _on_lost(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.tracker.forget([(p.topic, p.partition) for p in partitions])

    def _dispatch(self, record: Message) -> None:
        topic, partition, offset = where(record)
        self.tracker.add((topic, partition), offset)
        key = record.key() or b""
        queue = self._queues.get(key)
        if queue is None:
            queue = self._queues[key] = deque()
        queue.append(record)
        if key not in self._workers:
            self._workers[key] = asyncio.create_task(self._key_worker(key, queue))

    async def _key_worker(self, key: bytes, queue: deque[Message]) -> None:
        """Send one user's messages strictly in order."""
        failures = 0  # unexpected failures of the record at the head of the queue
        try:
            while queue and not self.stop_event.is_set():  # stopping: finish the send in flight, start no more
                record = queue[0]
                try:
                    await self._handle(record)
                except Abandoned:
                    return
                except Exception as exc:
                    # a bug or an unforeseen failure: retry it a few times, then give it up, so one record
                    # never holds back its user and its partition's commits for ever
                    failures += 1
                    if not await self._unexpected(record, exc, failures):
                        continue
                failures = 0
                queue.popleft()
                topic, partition, offset = where(record)
                self.tracker.done((topic, partition), offset)
        finally:
            del self._workers[key]
            if self._queues.get(key) is queue and (not queue or self.stop_event.is_set()):
                del self._queues[key]
            user = self._users.get(key.decode(errors="replace"))
            if user is not None and user.idle:
                del self._users[key.decode(errors="replace")]

    async def _unexpected(self, record: Message, exc: Exception, failures: int) -> bool:
        """Handle the ``failures``-th unexpected failure of ``record``: True when it is settled (given up)."""
        topic, partition, offset = where(record)
        limit = self.settings.gateway_max_attempts
        if failures < limit:
            if failures == 1:
                log.exception("sending %s[%d]@%d failed unexpectedly; retrying up to %d times before dead-lettering "
                              "it", topic, partition, offset, limit - 1)
            delay = backoff_delay(failures, self.settings.whatsapp_retry_base_delay,
                                  self.settings.whatsapp_retry_max_delay)
            if await sleep_unless_stopped(delay, self.stop_event):
                raise Abandoned from exc
            return False
        log.error("sending %s[%d]@%d failed unexpectedly %d times (last: %s: %s); giving it up", topic, partition,
                  offset, failures, type(exc).__name__, str(exc)[:300])
        try:
            msg: BeaconMessage | None = await self._decode(record)
        except Exception:  # the failure may be the decoding itself: dead-letter the bytes alone
            msg = None
        if msg is None or msg.channel != CHANNEL or msg.direction != OUTBOUND:
            await self.failures.dead_letter(record, exc, failures)
            SENDS.labels(CHANNEL, "failed", type(exc).__name__).inc()
        else:
            try:
                await self.failures.fail(record, msg, exc, failures)
            except Abandoned:
                raise
            except Exception:  # reporting the failure fails too: the dead letter alone, never a stuck user
                log.exception("reporting the failure of %s failed; it is dead-lettered without a failed status",
                              msg.id)
                await self.failures.dead_letter(record, exc, failures)
                self.store.settle(msg.id, FAILED)
        return True

    # --- one message ------------------------------------------------------------------------------

    async def _decode(self, record: Message) -> BeaconMessage:
        topic, partition, offset = where(record)
        kw: dict[str, Any] = {"topic": topic, "partition": partition, "offset": offset}
        try:
            return self.codec.decode(record.value(), **kw)
        except RegistryUnavailableError:
            return await retry_registry(self.codec.decode, record.value(), **kw)

    async def _handle(self, record: Message) -> None:
        try:
            msg = await self._decode(record)
        except BadMessageError as exc:
            await self.failures.dead_letter(record, exc, attempts=1)
            SENDS.labels(CHANNEL, "undecodable", "").inc()
            return
        if msg.channel != CHANNEL or msg.direction != OUTBOUND:
            return  # another channel's message: its own gateway sends it
        seen = self.store.get(msg.id)
        if seen is not None and seen[0] == FAILED and (source := redriven_from(record)):
            log.info("message %s failed before and is redriven from %s: sending it again", msg.id, source)
        elif seen is not None and seen[0] in {SENT, FAILED}:
            SENDS.labels(CHANNEL, "duplicate", "").inc()
            log.info("message %s was already %s; not sending it again", msg.id, seen[0])
            return
        if seen is not None and seen[0] == SENDING:
            POSSIBLE_DUPLICATES.labels(CHANNEL).inc()
            log.warning("message %s was in flight when the gateway stopped: sending it again (the Cloud API may have "
                        "accepted the first attempt)", msg.id)
        try:
            body = build_request(msg)
        except UnsendableMessageError as exc:
            await self.failures.fail(record, msg, exc, attempts=1)
            return
        await self._send_with_retries(record, msg, body)

    def _number(self, phone_number_id: str) -> Gate:
        gate = self._numbers.get(phone_number_id)
        if gate is None:
            rate = self.settings.whatsapp_rate_limit
            gate = self._numbers[phone_number_id] = Gate(TokenBucket(rate, rate))
        return gate

    def _user(self, user_key: str) -> Gate:
        gate = self._users.get(user_key)
        if gate is None:
            gate = self._users[user_key] = Gate(
                TokenBucket(self.settings.whatsapp_user_rate, self.settings.whatsapp_user_burst))
        return gate

    async def _wait(self, gate: Gate, scope: str, *, use_token: bool = True) -> None:
        waited = await wait_for_gate(gate, self.stop_event, use_token=use_token)
        if waited is None:
            raise Abandoned
        if waited > 0:
            LIMITER_WAIT.labels(CHANNEL, scope).observe(waited)

    async def _send_with_retries(self, record: Message, msg: BeaconMessage, body: dict[str, Any]) -> None:
        s = self.settings
        number = self._number(msg.account)
        user = self._user(msg.user_key)
        attempt = 0  # requests made
        own = 0  # failures that are this message's own (others to its number succeeded meanwhile)
        first_failure: int | None = None  # the number's success count at this message's first failure
        while True:
            attempt += 1
            await self._wait(user, "user", use_token=msg.kind != "read_receipt")
            await self._wait(number, "number")
            probe = number.probing
            try:
                async with self.slots:
                    self.store.begin(msg.id)
                    started = time.perf_counter()
                    try:
                        answer = await self.client.send(msg.account, body)
                        error = None
                    except CloudApiError as exc:
                        error = exc
                    SEND_SECONDS.labels(CHANNEL).observe(time.perf_counter() - started)
                if error is None or error.action not in OUTAGE_ACTIONS:
                    self._number_up(number, msg.account)
            finally:
                if probe:
                    number.probed()
            if error is None:
                wamid = (answer.get("messages") or [{}])[0].get("id") if isinstance(answer, dict) else None
                self.store.settle(msg.id, SENT, wamid)
                number.successes += 1
                number.streak = 0
                user.streak = 0
                SENDS.labels(CHANNEL, "sent", "").inc()
                return
            SEND_ERRORS.labels(CHANNEL, error.code_label, error.action.value).inc()
            action = error.action
            if action in OUTAGE_ACTIONS:
                if first_failure is None:
                    first_failure = number.successes
                if number.successes == first_failure or number.down:
                    # nothing to this number has succeeded since this message first failed (or other sends to it
                    # fail too): the Cloud API is failing for the number, not for this message. Pause the number
                    # and probe; count nothing.
                    self._number_down(number, msg.account, error)
                    continue
                own += 1
                if own >= s.whatsapp_retry_max_attempts:
                    log.warning("sending %s to %s failed %d times while other sends to number %s succeeded; "
                                "giving it up (%s)", msg.id, msg.user_key, own, msg.account, error)
                    action = Action.PERMANENT
                else:
                    delay = backoff_delay(own, s.whatsapp_retry_base_delay, s.whatsapp_retry_max_delay)
                    log.info("sending %s failed on its own (%s); retry %d in %.1fs", msg.id, error, own, delay)
                    if await sleep_unless_stopped(delay, self.stop_event):
                        raise Abandoned
                    continue
            if action is Action.PERMANENT:
                await self.failures.fail(record, msg, error, attempts=attempt)
                return
            if action is Action.BACKOFF_USER:
                user.streak += 1
                delay = min(s.whatsapp_user_backoff_base * 4 ** (user.streak - 1), 24 * 3600.0)
                user.block(delay)
                log.info("131056 for %s: backing off that user for %.1fs", msg.user_key, delay)
            elif action is Action.THROTTLE_NUMBER:
                if not number.blocked:
                    number.streak += 1
                delay = min(s.whatsapp_retry_base_delay * 2 ** (number.streak - 1), s.whatsapp_retry_max_delay)
                number.block(delay)
                log.warning("throughput error %s on number %s: slowing the whole number for %.1fs", error.code,
                            msg.account, delay)
            elif action is Action.PAUSE_NUMBER:
                if not number.blocked:
                    log.critical("ALERT: the Cloud API refused the access token of number %s (%s). Sending for this "
                                 "number is paused for %.0fs; renew BEACON_WHATSAPP_ACCESS_TOKEN(S) and restart the "
                                 "gateway. Messages wait in bm_out, none are dead-lettered.", msg.account, error,
                                 s.whatsapp_auth_pause)
                number.block(s.whatsapp_auth_pause)

    def _number_down(self, number: Gate, account: str, error: CloudApiError) -> None:
        """The Cloud API fails for ``account``: hold its sends, probe with one after a growing delay."""
        if number.blocked:
            return  # another send already paused it (sends in flight when the outage began)
        s = self.settings
        number.streak += 1
        delay = min(s.whatsapp_retry_base_delay * 2 ** (number.streak - 1), s.whatsapp_retry_max_delay)
        number.block(delay)
        if not number.down:
            number.down = True
            number.down_since = time.monotonic()
            OUTAGES.labels(CHANNEL).inc()
            log.error("the Cloud API is failing for number %s (%s): its sends are paused and probed with one "
                      "message at a time, up to every %.1fs; nothing is dead-lettered meanwhile", account, error,
                      s.whatsapp_retry_max_delay)

    def _number_up(self, number: Gate, account: str) -> None:
        """The Cloud API answered for ``account``: resume its paused sends."""
        if number.down:
            number.down = False
            number.streak = 0
            log.warning("the Cloud API answers for number %s again: sends resumed after %.1fs", account,
                        time.monotonic() - number.down_since)
