"""The bridge's inbound side: NostrMQ events from peers become records on a local topic, each
acknowledged back to its sender once the broker acknowledged it, and produced once however often
it is re-sent.

Dropped (counted by reason, logged the first time for each reason and every 100th after):
events with a bad id or signature, from a pubkey that is not a configured peer, that do not
decrypt, whose JSON is not NostrMQ's or the bridge's, or that carry a topic this role does not take.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from beacon.bridge.payload import MAX_ACK_IDS, Ack, Carried, Topic, ack_payload, parse
from beacon.bridge.seen import FROM_HEADER, ID_HEADER, SeenIds
from beacon.codec import MessageCodec, retry_registry
from beacon.errors import BadEventError, BeaconError
from beacon.kafka import AsyncProducer
from beacon.nostr import wire
from beacon.nostr.event import Event
from beacon.nostr.keys import NostrKey
from beacon.routing import with_channel

log = logging.getLogger("beacon.bridge")

Send = Callable[[str, Any], Awaitable[None]]


class Receiver:
    """Handles each event addressed to ``key``: ``accepts`` maps the carried topic to the local topic."""

    def __init__(self, key: NostrKey, peers: set[str], accepts: dict[Topic, str], *, codec: MessageCodec,
                 producer: AsyncProducer, send: Send, on_ack: Callable[[str], None], seen: SeenIds) -> None:
        self._key = key
        self._peers = peers
        self._accepts = accepts
        self._codec = codec
        self._producer = producer
        self._send = send
        self._on_ack = on_ack
        self.seen = seen
        #: Events dropped, by reason (signature, foreign, undecryptable, format, target, topic).
        self.dropped: Counter[str] = Counter()
        #: Messages produced, and copies answered from memory.
        self.produced = 0
        self.duplicates = 0
        self._producing_failed = False
        self._acks_queued: dict[str, list[str]] = {}
        self._acks_sending: set[str] = set()

    async def on_event(self, event: Event, relay: str) -> None:
        """Entry point for the relay pool: never raises."""
        try:
            received = wire.open_event(self._key, event, peers=self._peers)
            item = parse(received.payload)
        except BadEventError as exc:
            self._drop(exc.reason, exc.sender, str(exc))
            return
        except ValueError as exc:
            self._drop("format", event.pubkey, f"dropped Nostr event {event.id} from {event.pubkey}: {exc}")
            return
        if isinstance(item, Ack):
            for message_id in item.ids:
                self._on_ack(message_id)
            return
        await self._take(item, received)

    async def _take(self, item: Carried, received: wire.Received) -> None:
        msg = item.message
        topic = self._accepts.get(item.topic)
        if topic is None:
            self._drop("topic", received.sender, f"dropped message {msg.id} for user {msg.user_key} from "
                       f"{received.sender}: this bridge does not take messages for topic {item.topic!r}")
            return
        reply_to = received.response if received.response in self._peers else received.sender
        if msg.id in self.seen:
            self.duplicates += 1
            await self._ack(reply_to, msg.id)
            return
        pending = self.seen.pending.get(msg.id)
        if pending is not None:
            self.duplicates += 1
            if await asyncio.shield(pending):
                await self._ack(reply_to, msg.id)
            return
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self.seen.pending[msg.id] = done
        try:
            value = await retry_registry(self._codec.encode, msg, topic)
            headers = with_channel(msg, [(ID_HEADER, msg.id.encode()), (FROM_HEADER, received.sender.encode())])
            await self._producer.produce(topic, value, key=msg.user_key, headers=headers)
        except BeaconError as exc:
            done.set_result(False)
            if not self._producing_failed:
                self._producing_failed = True
                log.error("cannot produce bridged message %s for user %s to %s (%s); not acknowledging, so the "
                          "sender re-sends it. Is the broker up? See `beacon kafka status`.", msg.id, msg.user_key,
                          topic, exc)
            return
        finally:
            self.seen.pending.pop(msg.id, None)
        if self._producing_failed:
            self._producing_failed = False
            log.info("producing bridged messages to %s works again", topic)
        self.seen.add(msg.id)
        self.produced += 1
        done.set_result(True)
        await self._ack(reply_to, msg.id)

    async def _ack(self, to: str, message_id: str) -> None:
        """Acknowledge to ``to``: at once when no acknowledgement to it is on its way, else in the next one,
        which takes every id queued meanwhile (one relay event for many messages under load)."""
        self._acks_queued.setdefault(to, []).append(message_id)
        if to in self._acks_sending:
            return
        self._acks_sending.add(to)
        try:
            while self._acks_queued.get(to):
                queued = self._acks_queued[to]
                ids, self._acks_queued[to] = queued[:MAX_ACK_IDS], queued[MAX_ACK_IDS:]
                try:
                    await self._send(to, ack_payload(ids))
                except BeaconError as exc:
                    log.warning("could not send the acknowledgement of %d message(s) (first %s) to %s (%s); the "
                                "sender will re-send them and be acknowledged then", len(ids), ids[0], to, exc)
        finally:
            self._acks_sending.discard(to)

    def _drop(self, reason: str, sender: str, text: str) -> None:
        self.dropped[reason] += 1
        count = self.dropped[reason]
        if count == 1 or count % 100 == 0:
            log.warning("%s (%d dropped for %s so far)", text, count, reason)
