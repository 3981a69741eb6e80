"""What a worker does with one inbound record: decode, have the API process it, produce the
replies to bm_out and wait for the broker's acknowledgement; or dead-letter it with the reason.

Never raises for a message's own problems: bad bytes, API rejections and exhausted retries go to
bm_dlq. Outages that are not the message's fault (API, registry, Kafka) are waited out without
limit, so the record stays unacknowledged (and uncommitted) until they pass. An API failure counts
towards the message's retry budget only while the API is up (its ``/readyz`` answers); when it is
unreachable the message waits in :class:`~beacon.streams.health.DependencyHealth` instead.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from beacon import otel
from beacon.backoff import backoff_delay
from beacon.codec import MessageCodec, retry_registry
from beacon.config import Settings
from beacon.dlq import dead_letter
from beacon.errors import BadMessageError, BeaconError, KafkaError, RegistryUnavailableError
from beacon.groups import MessageGroup
from beacon.kafka import AsyncProducer, Headers
from beacon.messages import EVENT_KINDS, INBOUND, OUTBOUND, BeaconMessage, stable_id
from beacon.routing import with_channel
from beacon.streams.client import ApiClient, ApiError
from beacon.streams.health import API, KAFKA, REGISTRY, DependencyHealth
from beacon.streams.metrics import WorkerMetrics
from beacon.trace import (
    API_ANSWERED,
    API_DB,
    API_PIPELINE,
    API_SENT,
    BM_IN,
    HOPS_HEADER,
    TRACEPARENT,
    WORKER,
    add_duration,
    add_point,
    header,
    new_span_id,
    now_ms,
    parse_traceparent,
    record_headers,
)

log = logging.getLogger("beacon.streams")

ORIGIN = "worker"
T = TypeVar("T")
Pipeline = Callable[[BeaconMessage | MessageGroup], Awaitable[list[BeaconMessage]]]


@dataclass(frozen=True)
class Record:
    """An inbound Kafka record as the worker received it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    #: The record's timestamp (epoch ms: when the gateway produced it), its headers, and when the worker fetched it.
    timestamp_ms: float | None = None
    headers: Headers | None = None
    fetched_ms: float | None = None

    def hops(self) -> str:
        """The record's ``beacon-hops`` with the ``bm_in`` and ``worker`` points added (``beacon.trace``)."""
        hops = header(self.headers, HOPS_HEADER) or ""
        if self.timestamp_ms is not None:
            hops = add_point(hops, BM_IN, self.timestamp_ms)
        return add_point(hops, WORKER, self.fetched_ms)


def typing_receipt(msg: BeaconMessage) -> BeaconMessage:
    """The outbound ``read_receipt`` that marks ``msg`` read and shows typing; its id derives from the message,
    so a replay of the message never shows typing twice (the gateway sends each id once)."""
    return BeaconMessage(
        id=stable_id("typing", msg.id),
        user_key=msg.user_key,
        channel=msg.channel,
        account=msg.account,
        user_id=msg.user_id,
        direction=OUTBOUND,
        kind="read_receipt",
        channel_message_id=msg.channel_message_id,
        trace_id=msg.trace_id,
        # Not a reply (no reply_to_id): whoever counts the answers to a message does not count this one.
        metadata={"typing": "true", "typing_for": msg.id},
    )


async def echo_pipeline(msg: BeaconMessage | MessageGroup) -> list[BeaconMessage]:
    """In-process stand-in for the API (benchmarks): ``You said: <text>``, nothing for statuses; a group is
    answered once (its texts, one per line)."""
    if isinstance(msg, MessageGroup):
        reply = msg.last.reply_text("You said: " + "\n".join(m.text or "" for m in msg.messages))
        return [reply.model_copy(update={"id": stable_id("reply", msg.id, "0")})]
    if msg.direction != INBOUND:
        return []
    return [msg.reply_text(f"You said: {msg.text or ''}")]


class TypingTimer:
    """Runs ``show(msg)`` after ``delay`` seconds unless cancelled first. A timer, not a task sleeping: most
    messages are answered well within the delay, and a task per message (created, then cancelled) cost a
    worker more CPU than the timer it waited on."""

    __slots__ = ("_handle", "_task")

    def __init__(self, delay: float, show: Callable[[BeaconMessage], Awaitable[None]], msg: BeaconMessage) -> None:
        self._task: asyncio.Task[None] | None = None
        self._handle = asyncio.get_running_loop().call_later(delay, self._fire, show, msg)

    def _fire(self, show: Callable[[BeaconMessage], Awaitable[None]], msg: BeaconMessage) -> None:
        self._task = asyncio.ensure_future(show(msg))

    def cancel(self) -> None:
        """No typing if it has not started; stop waiting for its acknowledgement if it has (it is queued)."""
        self._handle.cancel()
        if self._task is not None:
            self._task.cancel()


class MessageProcessor:
    """Settles records: processed with replies acknowledged on bm_out, or dead-lettered."""

    def __init__(
        self,
        settings: Settings,
        codec: MessageCodec,
        producer: AsyncProducer,
        metrics: WorkerMetrics,
        health: DependencyHealth,
        pipeline: Pipeline | None = None,
    ) -> None:
        self.settings = settings
        self.codec = codec
        self.producer = producer
        self.metrics = metrics
        self.health = health
        self.client: ApiClient | None = None
        if pipeline is None:
            self.client = ApiClient(settings)
            pipeline = self.client.process
            health.register(API, self.client.readiness)
        else:
            health.register(API)
        health.register(REGISTRY)
        health.register(KAFKA)
        self.pipeline = pipeline
        self._max_attempts = max(1, settings.workers.retry_max_attempts)

    async def close(self) -> None:
        if self.client is not None:
            await self.client.close()

    async def handle(self, record: Record, started: float, decoded: BeaconMessage | None = None) -> None:
        """Settle one record (see the module doc); ``decoded`` when it was decoded already."""
        reason = await self._settle(record, decoded)
        self.metrics.latency.observe(time.monotonic() - started)
        if reason is None:
            self.metrics.messages.labels("replied", "").inc()
        else:
            self.metrics.messages.labels("dead_lettered", reason).inc()

    async def handle_group(self, members: list[tuple[Record, BeaconMessage]], started: float) -> None:
        """Settle a user's coalesced messages (``beacon.streams.coalesce``) with one API call and one answer. If
        the API refuses the group or it fails on its own, each message is settled alone instead, so a bad one
        is dead-lettered alone (the API answers none of them twice)."""
        group = MessageGroup(messages=[msg for _, msg in members])
        typing = self._typing_after_delay(group.last)
        hops, called_ms = members[-1][0].hops(), now_ms()  # the group's trace is its last message's
        try:
            replies = await self._call(group)
        except ApiError as exc:
            log.warning("group %s of %d messages (user %s, partition %d offsets %d-%d) failed as a group after %d "
                        "attempt(s) (%s); processing its messages one by one", group.id, len(members),
                        group.last.user_key, members[0][0].partition, members[0][0].offset, members[-1][0].offset,
                        exc.attempts, exc)
            for record, msg in members:
                await self.handle(record, started, msg)
            return
        finally:
            if typing is not None:
                typing.cancel()
        if replies:
            try:
                await self._produce_replies(group.last, replies, self._api_hops(group.last, hops, called_ms))
            except KafkaError as exc:  # not retryable: the brokers refuse these replies every time
                log.error("the replies to group %s of %d messages (user %s, partition %d offsets %d-%d) are refused by "
                          "Kafka (%s); dead-lettering its messages", group.id, len(members), group.last.user_key,
                          members[0][0].partition, members[0][0].offset, members[-1][0].offset, exc)
                for record, _msg in members:
                    await self._dead_letter(record, exc, attempts=1)
                self.metrics.latency.observe(time.monotonic() - started)
                self.metrics.messages.labels("dead_lettered", "replies_refused").inc(len(members))
                return
        self.metrics.latency.observe(time.monotonic() - started)
        self.metrics.messages.labels("replied", "").inc(len(members))
        self.metrics.coalesced.inc(len(members))
        self.metrics.turns.inc()

    async def decode(self, record: Record) -> BeaconMessage:
        """The record's BeaconMessage (registry outages waited out); raises BadMessageError."""
        return await self._decode(record)

    async def _settle(self, record: Record, decoded: BeaconMessage | None = None) -> str | None:
        try:
            msg = decoded if decoded is not None else await self._decode(record)
        except BadMessageError as exc:
            log.warning("%s; dead-lettering it", exc)
            await self._dead_letter(record, exc, attempts=0)
            return "bad_message"
        typing = self._typing_after_delay(msg)
        hops = record.hops()
        span = otel.start("worker process", msg.trace_id, parse_traceparent(header(record.headers, TRACEPARENT)),
                          record.fetched_ms, {"beacon.message_id": msg.id, "beacon.partition": record.partition,
                                                "beacon.offset": record.offset})
        span_id = span.span_id if span is not None else new_span_id()
        if self.client is not None:
            self.client.parent_spans[msg.id] = span_id
        called_ms = now_ms()
        try:
            return await self._answer(record, msg, typing, span_id, hops, called_ms)
        finally:
            if self.client is not None:
                self.client.parent_spans.pop(msg.id, None)
            if span is not None:
                span.end()

    async def _answer(self, record: Record, msg: BeaconMessage, typing: TypingTimer | None, span_id: str,
                      hops: str, called_ms: float) -> str | None:
        """The API's replies to ``msg`` produced (None), or ``msg`` dead-lettered (the reason)."""
        try:
            replies = await self._call(msg)
        except ApiError as exc:
            attempts = exc.attempts
            reason = "exhausted" if exc.retryable else "rejected"
            log.warning(
                "message %s (user %s, %s partition %d offset %d) dead-lettered after %d attempt(s): %s",
                msg.id, msg.user_key, record.topic, record.partition, record.offset, attempts, exc,
            )
            await self._dead_letter(record, exc, attempts=attempts)
            return reason
        except Exception as exc:  # a bug or a malformed reply: dead-letter rather than stall the partition
            log.exception("processing message %s failed unexpectedly; dead-lettering it", msg.id)
            await self._dead_letter(record, exc, attempts=1)
            return "unexpected"
        finally:
            if typing is not None:
                typing.cancel()  # answered in time: no typing; or it went, and the replies follow it
        if replies:
            try:
                await self._produce_replies(msg, replies, self._api_hops(msg, hops, called_ms), span_id)
            except KafkaError as exc:  # not retryable: the brokers refuse these replies every time
                log.error("the replies to message %s (user %s, %s partition %d offset %d) are refused by Kafka (%s); "
                          "dead-lettering the message", msg.id, msg.user_key, record.topic, record.partition,
                          record.offset, exc)
                await self._dead_letter(record, exc, attempts=1)
                return "replies_refused"
        return None

    def _api_hops(self, msg: BeaconMessage, hops: str, called_ms: float) -> str:
        """``hops`` with the API call's points (and the API's own timing, when it gave it)."""
        answered_ms = now_ms()
        took = self.client.timing_of(msg.id) if self.client is not None else None
        sent_ms, timing = took if took is not None else (called_ms, {})
        hops = add_point(hops, API_SENT, sent_ms)
        for name, part in ((API_DB, "db"), (API_PIPELINE, "pipeline")):
            if part in timing:
                hops = add_duration(hops, name, timing[part])
        return add_point(hops, API_ANSWERED, answered_ms)

    def _typing_after_delay(self, msg: BeaconMessage) -> TypingTimer | None:
        """Show typing (a read receipt with typing on bm_out, before the replies in the user's partition) if
        the message is still in processing after BEACON_WORKER_TYPING_DELAY seconds; cancelled when it is done."""
        delay = self.settings.workers.typing_delay
        if delay <= 0 or msg.direction != INBOUND or msg.kind in EVENT_KINDS or not msg.channel_message_id:
            return None
        return TypingTimer(delay, self._show_typing, msg)

    async def _show_typing(self, msg: BeaconMessage) -> None:
        if not self.health.all_up:
            return  # the message waits out an outage, not a slow answer: typing would promise too much
        receipt = typing_receipt(msg)
        topic = self.settings.topics.outbound
        try:
            value = await self._encode(receipt, topic)
            await self.producer.produce_nowait(topic, value, key=receipt.user_key, headers=with_channel(receipt))
        except BeaconError as exc:  # best effort: the reply is what matters, and it waits out Kafka itself
            log.info("typing indicator for message %s (user %s) not produced: %s", msg.id, msg.user_key, exc)

    async def _decode(self, record: Record) -> BeaconMessage:
        topic, partition, offset = record.topic, record.partition, record.offset
        return await self.with_registry(self.codec.decode, record.value, topic=topic, partition=partition,
                                        offset=offset)

    async def with_registry(self, call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``call`` (a codec call); while the registry is unavailable it is reported down and retried."""
        try:
            return call(*args, **kwargs)
        except RegistryUnavailableError as exc:
            self.health.report_down(REGISTRY, str(exc))
        try:
            return await retry_registry(call, *args, **kwargs)
        finally:  # it answered; or this call was abandoned, and the next one to fail reports it again
            self.health.report_up(REGISTRY)

    async def _call(self, msg: BeaconMessage | MessageGroup) -> list[BeaconMessage]:
        """The pipeline's replies. A retryable failure while the API is unreachable waits for it (not
        counted); one while the API is up is retried with backoff and jitter up to the limit."""
        attempt = 0
        while True:
            await self.health.wait_up(API)
            try:
                return await self.pipeline(msg)
            except ApiError as exc:
                if exc.retryable and await self._is_outage(exc):
                    continue
                attempt += 1
                if not exc.retryable or attempt >= self._max_attempts:
                    exc.attempts = attempt
                    raise
                delay = backoff_delay(attempt, self.settings.workers.retry_base_delay,
                                      self.settings.workers.retry_max_delay)
                self.metrics.api_retries.inc()
                log.info("message %s: %s; attempt %d of %d, retrying in %.2fs",
                         msg.id, exc, attempt, self._max_attempts, delay)
                await asyncio.sleep(delay)

    async def _is_outage(self, exc: ApiError) -> bool:
        """Whether ``exc`` is the API's outage rather than the message's failure (then it is reported)."""
        if exc.unreachable:
            self.health.report_down(API, str(exc))
            return True
        return not await self.health.confirm_up(API, str(exc))

    async def _encode(self, reply: BeaconMessage, topic: str) -> bytes:
        return await self.with_registry(self.codec.encode, reply, topic)

    async def _produce_replies(self, msg: BeaconMessage, replies: list[BeaconMessage], hops: str = "",
                               span_id: str | None = None) -> None:
        """Produce replies in order, keyed by user, and wait until the broker acknowledged all; each carries
        ``hops`` and the trace of ``msg`` (``beacon.trace``)."""
        topic = self.settings.topics.outbound
        values = [await self._encode(r, topic) for r in replies]
        try:
            await self._produce_until_acknowledged(msg, replies, values, record_headers(hops, msg.trace_id,
                                                                                        span_id or new_span_id()))
        finally:  # acknowledged; or abandoned, and the next produce to fail reports Kafka again
            self.health.report_up(KAFKA)

    async def _produce_until_acknowledged(self, msg: BeaconMessage, replies: list[BeaconMessage],
                                          values: list[bytes], headers: Headers | None = None) -> None:
        topic = self.settings.topics.outbound
        attempt = 0
        while True:
            attempt += 1
            futures = [self.producer.produce_nowait(topic, v, key=r.user_key, headers=with_channel(r, headers))
                       for r, v in zip(replies, values, strict=True)]
            try:
                for fut in futures:
                    await fut
            except KafkaError as exc:
                for fut in futures:
                    fut.cancel()
                if not exc.retryable:
                    raise  # refused every time (too large, not authorized): _settle dead-letters the message
                self.health.report_down(KAFKA, str(exc))
                delay = backoff_delay(attempt, 0.5, 10.0)
                log.warning("replies to message %s not acknowledged by Kafka (%s); producing them again in %.1fs "
                            "(same ids, so the gateway drops duplicates)", msg.id, exc, delay)
                await asyncio.sleep(delay)
                continue
            self.metrics.replies.inc(len(futures))
            return

    async def _dead_letter(self, record: Record, error: BaseException, attempts: int) -> None:
        """Dead-letter the original bytes; Kafka trouble is retried: the record must not be lost."""
        attempt = 0
        while True:
            attempt += 1
            try:
                await dead_letter(
                    self.producer, self.settings, key=record.key, value=record.value, topic=record.topic,
                    partition=record.partition, offset=record.offset, error=error, attempts=attempts,
                    origin=ORIGIN, trace_headers=record.headers,
                )
                self.health.report_up(KAFKA)
                return
            except KafkaError as exc:
                if not exc.retryable:
                    raise  # bm_dlq refuses it every time (not authorized, a fatal client): stop, the operator must act
                self.health.report_down(KAFKA, str(exc))
                delay = backoff_delay(attempt, 0.5, 10.0)
                log.warning("dead-lettering %s partition %d offset %d failed (%s); retrying in %.1fs",
                            record.topic, record.partition, record.offset, exc, delay)
                await asyncio.sleep(delay)
