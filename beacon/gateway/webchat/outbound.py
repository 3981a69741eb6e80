"""bm_out to the visitors: this site's replies, consumed in the web chat's own group.

Delivering a reply is local and quick (a row in the history, a frame on the open sockets), so records
are delivered one after another in fetch order: each partition, hence each visitor, keeps its order,
and a partition's offset is committed once every record below it is delivered. Bytes that do not
decode go to ``bm_dlq``; a registry outage is waited out.
"""

from __future__ import annotations

import asyncio
import logging
import time

from beacon.codec import MessageCodec, retry_registry
from beacon.config import Settings
from beacon.dlq import dead_letter
from beacon.errors import BadMessageError
from beacon.gateway.webchat import CHANNEL
from beacon.gateway.webchat.replies import Replies
from beacon.kafka import AsyncProducer, Consumer, KafkaException, Message, TopicPartition, fetch_batch, make_consumer

log = logging.getLogger("beacon.gateway.webchat")

COMMIT_INTERVAL = 0.2  # seconds between offset commits while replies arrive


class Outbound:
    """Consumes bm_out until ``stop()`` and hands this site's replies to ``Replies``."""

    def __init__(self, settings: Settings, producer: AsyncProducer, codec: MessageCodec, replies: Replies) -> None:
        self.settings = settings
        self.producer = producer
        self.codec = codec
        self.replies = replies
        self.topic = settings.topic_out
        self.prefix = f"{CHANNEL}:{settings.webchat_site}:".encode()
        self.stop_event = asyncio.Event()
        self._done: dict[int, int] = {}

    def stop(self) -> None:
        self.stop_event.set()

    async def run(self) -> None:
        consumer = make_consumer(self.settings, self.settings.webchat_group)
        consumer.subscribe([self.topic], on_revoke=lambda c, parts: self._commit(c))
        last_commit = time.monotonic()
        try:
            while not self.stop_event.is_set():
                for record in await asyncio.to_thread(fetch_batch, consumer, 500, 0.1):
                    if record.error() is not None:
                        log.warning("consuming %s: %s", self.topic, record.error())
                        continue
                    await self._handle(record)
                    self._done[record.partition() or 0] = (record.offset() or 0) + 1
                if time.monotonic() - last_commit >= COMMIT_INTERVAL:
                    self._commit(consumer)
                    last_commit = time.monotonic()
        finally:
            self._commit(consumer)
            await asyncio.to_thread(consumer.close)

    async def _handle(self, record: Message) -> None:
        key = record.key()
        if not isinstance(key, bytes) or not key.startswith(self.prefix):
            return  # another channel's or another site's
        try:
            msg = await retry_registry(self.codec.decode, record.value(), topic=self.topic,
                                       partition=record.partition(), offset=record.offset())
        except BadMessageError as exc:
            await dead_letter(self.producer, self.settings, key=key, value=record.value(), topic=self.topic,
                              partition=record.partition() or 0, offset=record.offset() or 0, error=exc, attempts=1,
                              origin="gateway-webchat")
            return
        if self.replies.is_mine(msg):
            await self.replies.deliver(msg)

    def _commit(self, consumer: Consumer) -> None:
        if not self._done:
            return
        offsets = [TopicPartition(self.topic, p, o) for p, o in self._done.items()]
        try:
            consumer.commit(offsets=offsets, asynchronous=False)
            self._done.clear()
        except KafkaException as exc:  # the next commit carries the same offsets
            log.warning("committing offsets of %s failed (%s); will retry", self.topic, exc)
