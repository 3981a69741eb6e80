"""bm_out to a channel: the sender engine every channel's gateway runs.

One consumer (the channel's own group) reads every channel's records; another channel's, named by its
``beacon-channel`` header (``beacon.routing``), is skipped undecoded and committed with its partition's
finished prefix (one without the header is decoded to tell). Its own feed the keyed lanes
(``beacon.lanes``): each user key's messages are sent strictly in order while keys run concurrently,
at most BEACON_GATEWAY_MAX_IN_FLIGHT requests at once, and each partition is committed only up to its
lowest unsettled record. The channel classifies its errors (``beacon.gateway.channel.Action``): a user
told to wait is backed off alone, a throughput error slows its account, refused credentials pause the account and alert,
permanent errors go to bm_dlq with a ``failed`` status on bm_in. Transient and unknown errors (5xx,
timeouts, refused connections) pause the account and probe it with one send at a time while nothing
to it succeeds (an outage: waited out, nothing dead-lettered); when they repeat for one message while
others to the account succeed, that message is given up after the channel's ``retry_max_attempts``.
An unexpected error is retried BEACON_GATEWAY_MAX_ATTEMPTS times. Each id is settled once in the
durable SentStore (a record redriven from bm_dlq is sent again unless it was SENT).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from beacon import otel
from beacon.backoff import backoff_ceiling, backoff_delay
from beacon.codec import MessageCodec, retry_registry
from beacon.config import Settings
from beacon.errors import BadMessageError, RegistryUnavailableError
from beacon.gateway.channel import Action, Channel, SendError, UnsendableMessageError
from beacon.gateway.failures import Abandoned, FailureReporter, redriven_from, where
from beacon.gateway.limiter import Gate, TokenBucket, sleep_unless_stopped, wait_for_gate
from beacon.gateway.metrics import LIMITER_WAIT, OUTAGES, POSSIBLE_DUPLICATES, SEND_ERRORS, SEND_SECONDS, SENDS
from beacon.gateway.store import FAILED, SENDING, SENT, SentStore
from beacon.gateway.typing import TypingRefresher, shows_typing
from beacon.kafka import AsyncProducer, Consumer, KafkaException, Message, TopicPartition, fetch_wanted, make_consumer
from beacon.lanes import Job, KeyedDispatcher
from beacon.messages import OUTBOUND, BeaconMessage
from beacon.routing import channel_of
from beacon.trace import (
    BM_OUT,
    GATEWAY,
    HOPS_HEADER,
    SEND,
    TRACEPARENT,
    add_point,
    current_hops,
    header,
    new_span_id,
    now_ms,
    parse_traceparent,
    traceparent,
)

COMMIT_INTERVAL = 0.2  # seconds between offset commits while records settle
PRUNE_INTERVAL = 3600.0  # seconds between prunes of settled ids older than bm_out's retention
SWEEP_INTERVAL = 60.0  # seconds between sweeps of per-user gates that hold no state
FETCH_BATCH = 500  # records taken from the consumer at once
#: Errors that may mean the channel's API is down for an account rather than refusing one message.
OUTAGE_ACTIONS = frozenset({Action.RETRY, Action.RETRY_FEW})
#: Longest back-off of one user (the channel keeps saying "too many messages to this user").
USER_BACKOFF_CAP = 24 * 3600.0

TP = tuple[str, int]


class Outbound:
    """The sending half of a channel's gateway."""

    def __init__(self, settings: Settings, producer: AsyncProducer, codec: MessageCodec, store: SentStore,
                 channel: Channel) -> None:
        self.settings = settings
        self.producer = producer
        self.codec = codec
        self.store = store
        self.channel = channel
        self.name = channel.name
        self.limits = channel.limits
        self.log = logging.getLogger(f"beacon.gateway.{channel.name}.outbound")
        self.topic = settings.topics.outbound
        self.stop_event = asyncio.Event()
        self.slots = asyncio.Semaphore(settings.gateway.max_in_flight)
        # the consumer is paused at max_pending records in flight, so a whole batch always fits: submit never waits
        self.lanes = KeyedDispatcher(self._handle_job, lambda _job: None, settings.gateway.max_pending + FETCH_BATCH)
        self._accounts: dict[str, Gate] = {}
        self._users: dict[str, Gate] = {}
        self._committed: dict[TP, int] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._paused = False
        #: The records of the fetch under way (filled in the fetching thread; see ``_forget_fetched``).
        self._fetching: list[Message] = []
        self.finished = asyncio.Event()
        self.failures = FailureReporter(channel.name, settings, producer, codec, store, self.stop_event)
        self.typing = TypingRefresher(channel.name, channel.typing_refresh, settings.gateway.typing_max_seconds)
        # the labelled metrics of every send, looked up once (``labels()`` costs more than the increment)
        self._sent = SENDS.labels(channel.name, "sent", "")
        self._send_seconds = SEND_SECONDS.labels(channel.name)

    # --- consuming ------------------------------------------------------------------------------

    async def run(self) -> None:
        """Consume bm_out until ``stop()``; then finish in-flight sends and commit."""
        self._loop = asyncio.get_running_loop()
        consumer = make_consumer(self.settings, self.channel.group)
        consumer.subscribe([self.topic], on_revoke=self._on_revoke, on_lost=self._on_lost)
        last_commit = last_prune = last_sweep = time.monotonic()
        try:
            while not self.stop_event.is_set():
                self._apply_backpressure(consumer)
                # another channel's records do not wake the loop one by one: they come with the next own record
                records = self._fetching = []
                await asyncio.to_thread(fetch_wanted, consumer, FETCH_BATCH, 0.1, self._wanted, records)
                for record in records:
                    err = record.error()
                    if err is not None:
                        self.log.warning("consuming %s: %s", self.topic, err)
                        continue
                    topic, partition, offset = where(record)
                    if not self._wanted(record):
                        self.lanes.skip((topic, partition), offset)  # its own gateway sends it
                        continue
                    await self.lanes.submit(Job(record.key() or b"", (topic, partition), offset, record, now_ms()))
                now = time.monotonic()
                if now - last_commit >= COMMIT_INTERVAL:
                    self._commit(consumer, self.lanes.committable(), asynchronous=True)
                    last_commit = now
                if now - last_prune >= PRUNE_INTERVAL:
                    self.store.prune(self.settings.topics.retention_ms / 1000)
                    last_prune = now
                if now - last_sweep >= SWEEP_INTERVAL:
                    self._users = {k: g for k, g in self._users.items() if not g.idle}
                    last_sweep = now
        finally:
            await self.typing.close()
            offsets = await self.lanes.drain(None, self.settings.gateway.shutdown_timeout)
            self._commit(consumer, offsets, asynchronous=False)
            await asyncio.to_thread(consumer.close)
            self.finished.set()

    def stop(self) -> None:
        self.stop_event.set()

    def _wanted(self, record: Message) -> bool:
        """Whether ``record`` may be this channel's: an error, its own, or one without the channel header (an
        older producer's: decoded to tell)."""
        if record.error() is not None:
            return True
        channel = channel_of(record.headers())
        return channel is None or channel == self.name

    def _apply_backpressure(self, consumer: Consumer) -> None:
        over = self.lanes.in_flight >= self.settings.gateway.max_pending
        if over != self._paused:
            assignment = consumer.assignment()
            (consumer.pause if over else consumer.resume)(assignment)
            self._paused = over

    def _commit(self, consumer: Consumer, offsets: dict[Any, int], *, asynchronous: bool) -> None:
        changed = {tp: o for tp, o in offsets.items() if self._committed.get(tp) != o}
        if not changed:
            return
        commits = [TopicPartition(t, p, o) for (t, p), o in changed.items()]
        try:
            if asynchronous:
                consumer.commit(offsets=commits, asynchronous=True)
            else:
                consumer.commit(offsets=commits, asynchronous=False)
        except KafkaException as exc:  # the next commit carries the same offsets
            self.log.warning("committing offsets of %s failed (%s); will retry", self.topic, exc)
            return
        self._committed.update(changed)

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Runs in the polling thread: the event loop drains those partitions' lanes, then what settled is
        committed; the rest is sent by the partitions' next owner (the settled-id record skips repeats)."""
        wanted = [(p.topic, p.partition) for p in partitions]
        self._forget_fetched(wanted)
        offsets = self._drain_from_thread(wanted, self.settings.gateway.shutdown_timeout)
        self._commit(consumer, offsets, asynchronous=False)
        for tp in wanted:
            self._committed.pop(tp, None)

    def _on_lost(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Partitions lost (no commit possible, e.g. the group coordinator's broker died): the sends already
        in flight finish and are recorded (cancelled mid-request, the channel may have taken one, and the
        partition's next owner, often this same gateway, would send it again); queued ones are left."""
        wanted = [(p.topic, p.partition) for p in partitions]
        self._forget_fetched(wanted)
        self._drain_from_thread(wanted, self.settings.gateway.shutdown_timeout)
        for tp in wanted:
            self._committed.pop(tp, None)

    def _forget_fetched(self, partitions: list[TP]) -> None:
        """Take the records of ``partitions`` out of the fetch under way (this runs in its thread, inside its
        poll): fetched before the revocation, they are the partitions' next owner's to handle, and neither
        sent nor skipped (committed) here."""
        gone = set(partitions)
        self._fetching[:] = [r for r in self._fetching if (r.topic(), r.partition()) not in gone]

    def _drain_from_thread(self, partitions: list[TP], timeout: float) -> dict[Any, int]:
        if self._loop is None or not partitions:
            return {}
        future = asyncio.run_coroutine_threadsafe(self.lanes.drain(partitions, timeout), self._loop)
        return future.result(timeout=timeout + 10)

    async def _handle_job(self, job: Job) -> None:
        """Settle one record: sent, given up, or (stopping) left for the next start. Unexpected failures are
        retried a few times, then given up, so one record never holds back its user and partition for ever."""
        record: Message = job.payload
        failures = 0
        while True:
            if self.stop_event.is_set():
                raise Abandoned  # stopping: finish the sends in flight, start no more
            try:
                await self._handle(record, job.started)
                return
            except Abandoned:
                raise
            except Exception as exc:  # a bug or an unforeseen failure
                failures += 1
                if await self._unexpected(record, exc, failures):
                    return

    async def _unexpected(self, record: Message, exc: Exception, failures: int) -> bool:
        """Handle the ``failures``-th unexpected failure of ``record``: True when it is settled (given up)."""
        topic, partition, offset = where(record)
        limit = self.settings.gateway.max_attempts
        if failures < limit:
            if failures == 1:
                self.log.exception("sending %s[%d]@%d failed unexpectedly; retrying up to %d times before "
                                   "dead-lettering it", topic, partition, offset, limit - 1)
            delay = backoff_delay(failures, self.limits.retry_base_delay, self.limits.retry_max_delay)
            if await sleep_unless_stopped(delay, self.stop_event):
                raise Abandoned from exc
            return False
        self.log.error("sending %s[%d]@%d failed unexpectedly %d times (last: %s: %s); giving it up", topic, partition,
                       offset, failures, type(exc).__name__, str(exc)[:300])
        try:
            msg: BeaconMessage | None = await self._decode(record)
        except Exception:  # the failure may be the decoding itself: dead-letter the bytes alone
            msg = None
        if msg is None or msg.channel != self.name or msg.direction != OUTBOUND:
            await self.failures.dead_letter(record, exc, failures)
            SENDS.labels(self.name, "failed", type(exc).__name__).inc()
        else:
            try:
                await self.failures.fail(record, msg, exc, failures)
            except Abandoned:
                raise
            except Exception:  # reporting the failure fails too: the dead letter alone, never a stuck user
                self.log.exception("reporting the failure of %s failed; it is dead-lettered without a failed status",
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

    async def _handle(self, record: Message, fetched_ms: float | None = None) -> None:
        try:
            msg = await self._decode(record)
        except BadMessageError as exc:
            await self.failures.dead_letter(record, exc, attempts=1)
            SENDS.labels(self.name, "undecodable", "").inc()
            return
        if msg.channel != self.name or msg.direction != OUTBOUND:
            return  # another channel's message: its own gateway sends it
        if msg.kind != "read_receipt":
            self.typing.stop(msg.user_key)  # the reply goes: the typing indicator ends with it
        seen = self.store.get(msg.id)
        if seen is not None and seen[0] == FAILED and (source := redriven_from(record)):
            self.log.info("message %s failed before and is redriven from %s: sending it again", msg.id, source)
        elif seen is not None and seen[0] in {SENT, FAILED}:
            SENDS.labels(self.name, "duplicate", "").inc()
            self.log.info("message %s was already %s; not sending it again", msg.id, seen[0])
            return
        if seen is not None and seen[0] == SENDING:
            POSSIBLE_DUPLICATES.labels(self.name).inc()
            self.log.warning("message %s was in flight when the gateway stopped: sending it again (%s may have "
                             "accepted the first attempt)", msg.id, self.channel.api_name)
        try:
            request = self.channel.build(msg)
        except UnsendableMessageError as exc:
            await self._give_up(record, msg, exc, attempts=1)
            return
        span = self._trace(record, msg, fetched_ms)
        try:
            await self._send_with_retries(record, msg, request)
        finally:
            if span is not None:
                span.end()

    def _trace(self, record: Message, msg: BeaconMessage, fetched_ms: float | None) -> otel.Span | None:
        """Set the trace context and hops (to ``bm_out`` and ``gateway``) the channel's send carries
        (``beacon.trace``; ``send`` is added at each attempt); the send's span when spans are on."""
        headers = record.headers()
        span = otel.start(f"{self.name} send", msg.trace_id, parse_traceparent(header(headers, TRACEPARENT)),
                          fetched_ms, {"beacon.message_id": msg.id})
        hops = header(headers, HOPS_HEADER) or ""
        _kind, stamp = record.timestamp()
        if stamp > 0:  # else not available
            hops = add_point(hops, BM_OUT, float(stamp))
        span_id = span.span_id if span is not None else new_span_id()
        current_hops.set((traceparent(msg.trace_id, span_id), add_point(hops, GATEWAY, fetched_ms)))
        return span

    async def _give_up(self, record: Message, msg: BeaconMessage, error: BaseException, attempts: int) -> None:
        await self.failures.fail(record, msg, error, attempts=attempts)
        try:
            await self.channel.on_permanent_failure(msg, error)
        except Exception:  # the failure is recorded; the channel's extra step is best effort
            self.log.exception("the %s step after giving up %s failed", self.name, msg.id)

    def _account(self, account: str) -> Gate:
        gate = self._accounts.get(account)
        if gate is None:
            rate = self.limits.account
            gate = self._accounts[account] = Gate(TokenBucket(rate.per_second, rate.burst))
        return gate

    def _user(self, msg: BeaconMessage) -> Gate:
        gate = self._users.get(msg.user_key)
        if gate is None:
            rate = self.channel.user_rate(msg)
            gate = self._users[msg.user_key] = Gate(TokenBucket(rate.per_second, rate.burst))
        return gate

    async def _wait(self, gate: Gate, scope: str, *, use_token: bool = True) -> None:
        waited = await wait_for_gate(gate, self.stop_event, use_token=use_token)
        if waited is None:
            raise Abandoned
        if waited > 0:
            LIMITER_WAIT.labels(self.name, scope).observe(waited)

    async def _send_with_retries(self, record: Message, msg: BeaconMessage, request: Any) -> None:
        lim = self.limits
        account_id = self.channel.account_of(msg)
        account = self._account(account_id)
        user = self._user(msg)
        attempt = 0  # requests made
        own = 0  # failures that are this message's own (others to its account succeeded meanwhile)
        first_failure: int | None = None  # the account's success count at this message's first failure
        trace = current_hops.get()
        while True:
            attempt += 1
            await self._wait(user, "user", use_token=msg.kind != "read_receipt")
            await self._wait(account, "account")
            probe = account.probing
            try:
                async with self.slots:
                    self.store.begin(msg.id)
                    started = time.perf_counter()
                    if trace is not None:
                        current_hops.set((trace[0], add_point(trace[1], SEND)))
                    try:
                        channel_id = await self.channel.send(msg, request)
                        error = None
                    except SendError as exc:
                        error = exc
                    self._send_seconds.observe(time.perf_counter() - started)
                if error is None or error.action not in OUTAGE_ACTIONS:
                    self._account_up(account, account_id)
            finally:
                if probe:
                    account.probed()
            if error is None:
                self.store.settle(msg.id, SENT, channel_id)
                if shows_typing(msg):
                    self.typing.start(msg, lambda: self.channel.send(msg, request))
                account.successes += 1
                account.streak = 0
                user.streak = 0
                self._sent.inc()
                return
            SEND_ERRORS.labels(self.name, error.code_label, error.action.value).inc()
            action = error.action
            if action in OUTAGE_ACTIONS:
                if first_failure is None:
                    first_failure = account.successes
                if account.successes == first_failure or account.down:
                    # nothing to this account has succeeded since this message first failed (or other sends to
                    # it fail too): the API is failing for the account, not for this message. Pause the account
                    # and probe; count nothing.
                    self._account_down(account, account_id, error)
                    continue
                own += 1
                if own >= lim.retry_max_attempts:
                    self.log.warning("sending %s to %s failed %d times while other sends to %s %s succeeded; "
                                     "giving it up (%s)", msg.id, msg.user_key, own, self.channel.account_name,
                                     account_id, error)
                    action = Action.PERMANENT
                else:
                    delay = backoff_delay(own, lim.retry_base_delay, lim.retry_max_delay)
                    self.log.info("sending %s failed on its own (%s); retry %d in %.1fs", msg.id, error, own, delay)
                    if await sleep_unless_stopped(delay, self.stop_event):
                        raise Abandoned
                    continue
            if action is Action.PERMANENT:
                await self._give_up(record, msg, error, attempts=attempt)
                return
            if action is Action.BACKOFF_USER:
                user.streak += 1
                delay = error.retry_after or backoff_ceiling(user.streak, lim.user_backoff_base, USER_BACKOFF_CAP, 4)
                user.block(delay)
                self.log.info("%s for %s: backing off that user for %.1fs", error.code_label, msg.user_key, delay)
            elif action is Action.SLOW_ACCOUNT:
                if not account.blocked:
                    account.streak += 1
                delay = error.retry_after or backoff_ceiling(account.streak, lim.retry_base_delay, lim.retry_max_delay)
                account.block(delay)
                self.log.warning("throughput error %s on %s %s: slowing all its sends for %.1fs", error.code_label,
                                 self.channel.account_name, account_id, delay)
            elif action is Action.PAUSE_ACCOUNT:
                if not account.blocked:
                    self.log.critical("ALERT: %s refused the credentials of %s %s (%s). Sending for it is paused for "
                                      "%.0fs; renew them and restart the gateway. Messages wait in bm_out, none are "
                                      "dead-lettered.", self.channel.api_name, self.channel.account_name, account_id,
                                      error, lim.auth_pause)
                account.block(lim.auth_pause)

    def _account_down(self, account: Gate, account_id: str, error: SendError) -> None:
        """The API fails for ``account_id``: hold its sends, probe with one after a growing delay."""
        if account.blocked:
            return  # another send already paused it (sends in flight when the outage began)
        lim = self.limits
        account.streak += 1
        account.block(backoff_ceiling(account.streak, lim.retry_base_delay, lim.retry_max_delay))
        if not account.down:
            account.down = True
            account.down_since = time.monotonic()
            OUTAGES.labels(self.name).inc()
            self.log.error("%s is failing for %s %s (%s): its sends are paused and probed with one message at a "
                           "time, up to every %.1fs; nothing is dead-lettered meanwhile", self.channel.api_name,
                           self.channel.account_name, account_id, error, lim.retry_max_delay)

    def _account_up(self, account: Gate, account_id: str) -> None:
        """The API answered for ``account_id``: resume its paused sends."""
        if account.down:
            account.down = False
            account.streak = 0
            self.log.warning("%s answers for %s %s again: sends resumed after %.1fs", self.channel.api_name,
                             self.channel.account_name, account_id, time.monotonic() - account.down_since)
