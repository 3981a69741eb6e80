"""Giving an outbound message up: the original record to bm_dlq, a ``failed`` status to bm_in (so
the business logic hears of it), and its id settled FAILED. Records the broker refuses for their
size are refused every time, so they are cut down rather than retried: a dead letter keeps its
headers without the value, a status loses its content. Broker outages are waited out (``beacon.backoff``);
a refusal that is not retryable (``KafkaError.retryable``) is raised.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from beacon.backoff import backoff_delay
from beacon.codec import MessageCodec
from beacon.config import Settings
from beacon.dlq import dead_letter
from beacon.errors import BeaconError, KafkaError
from beacon.gateway.channel import SendError
from beacon.gateway.limiter import sleep_unless_stopped
from beacon.gateway.metrics import SENDS
from beacon.gateway.records import AVRO_INT, encode_within, is_too_large, shrink
from beacon.gateway.store import FAILED, SentStore
from beacon.kafka import AsyncProducer, Message
from beacon.lanes import LeaveUnfinished
from beacon.messages import STATUS, BeaconMessage, StatusError, stable_id
from beacon.ops.deadletters import H_REDRIVEN_FROM


def where(record: Message) -> tuple[str, int, int]:
    """Topic, partition and offset of a consumed record (always set on records from consume())."""
    topic, partition, offset = record.topic(), record.partition(), record.offset()
    assert topic is not None and partition is not None and offset is not None
    return topic, partition, offset


class Abandoned(LeaveUnfinished):
    """Shutting down while a message waited: leave it unsettled, it is redelivered at the next start."""


class FailureReporter:
    """Dead-letters records and reports failed sends for one channel's sender."""

    def __init__(self, channel: str, settings: Settings, producer: AsyncProducer, codec: MessageCodec,
                 store: SentStore, stop: asyncio.Event) -> None:
        self.channel = channel
        self.origin = f"gateway-{channel}"
        self.log = logging.getLogger(f"beacon.gateway.{channel}.outbound")
        self.settings = settings
        self.producer = producer
        self.codec = codec
        self.store = store
        self.stop = stop

    async def fail(self, record: Message, msg: BeaconMessage, error: BaseException, attempts: int) -> None:
        """Permanent failure: the original record to bm_dlq, a ``failed`` status to bm_in, then settled."""
        await self.dead_letter(record, error, attempts)
        code = error.code if isinstance(error, SendError) else None
        if code is not None and code not in AVRO_INT:
            code = None  # the text still carries it
        status = BeaconMessage(
            id=stable_id(self.channel, msg.account, "send-failed", msg.id),
            user_key=msg.user_key, channel=self.channel, account=msg.account, user_id=msg.user_id,
            direction=STATUS, kind="status", status="failed", reply_to_id=msg.id, trace_id=msg.trace_id,
            error=StatusError(code=code, title=getattr(error, "title", None), message=str(error),
                              details=getattr(error, "details", None)),
            metadata={"origin": self.origin, "failed_kind": msg.kind},
        )
        await self._produce_status(status)
        self.store.settle(msg.id, FAILED, code=code)
        SENDS.labels(self.channel, "failed", str(code) if code is not None else type(error).__name__).inc()

    async def dead_letter(self, record: Message, error: BaseException, attempts: int) -> None:
        """The record to bm_dlq; when the broker refuses it as too large, the reason and origin without the value."""
        topic, partition, offset = where(record)
        value = record.value()
        attempt = 0
        while True:
            attempt += 1
            try:
                await dead_letter(self.producer, self.settings, key=record.key(), value=value,
                                  topic=topic, partition=partition, offset=offset,
                                  error=error, attempts=attempts, origin=self.origin, trace_headers=record.headers())
                return
            except KafkaError as exc:
                if is_too_large(exc) and value is not None:
                    self.log.error("the dead letter of %s[%d]@%d is too large for %s (%d bytes): dead-lettering the "
                                   "reason without the value; the value stays on %s until its retention ends", topic,
                                   partition, offset, self.settings.topics.dlq, len(value), topic)
                    reason = f"{type(error).__name__}: {error}"[:2000]
                    error = TooLargeError(f"{reason} (value of {len(value)} bytes not kept: too large to dead-letter)")
                    value = None
                    continue
                if not exc.retryable:
                    raise  # refused every time (authorization, a fatal client): waiting cannot help
                delay = backoff_delay(attempt, 0.5, 10.0)
                self.log.error("dead-lettering %s[%d]@%d failed (%s); retrying in %.1fs", topic, partition, offset,
                               exc, delay)
                if await sleep_unless_stopped(delay, self.stop):
                    raise Abandoned from exc

    async def _produce_status(self, status: BeaconMessage) -> None:
        """A status to bm_in, in a size the broker accepts; retried while the broker is unavailable."""
        topic = self.settings.topics.inbound
        value, status = encode_within(self.codec, status, topic, self.settings.gateway.max_record_bytes)
        attempt = 0
        while True:
            attempt += 1
            try:
                await self.producer.produce(topic, value, key=status.user_key.encode())
                return
            except BeaconError as exc:
                if is_too_large(exc):
                    self.log.error("the failed status %s is too large for %s (%d bytes): producing it without its "
                                   "error details", status.id, topic, len(value))
                    value, status = shrink(self.codec, status, topic, len(value))
                    continue
                if not exc.retryable:
                    raise  # refused every time (authorization, a fatal client): waiting cannot help
                delay = backoff_delay(attempt, 0.5, 10.0)
                self.log.error("producing a failed status to %s failed (%s); retrying in %.1fs", topic, exc, delay)
                if await sleep_unless_stopped(delay, self.stop):
                    raise Abandoned from exc


class TooLargeError(BeaconError):
    """A record the broker refuses for its size (refused every time: never retried as it is)."""


def redriven_from(record: Message) -> str | None:
    """The dead letter a record was redriven from (``beacon dlq redrive`` marks it), or None."""
    headers: Any = record.headers() or []
    for key, value in headers:
        if key == H_REDRIVEN_FROM:
            return value.decode(errors="replace") if isinstance(value, bytes) else str(value)
    return None
