"""The bridge's receiving side against the real relay, broker and registry: what it drops and counts,
and what it produces once and acknowledges every time."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from beacon.bridge.payload import message_payload, parse
from beacon.bridge.receive import Receiver
from beacon.bridge.seen import ID_HEADER, SeenIds
from beacon.codec import MessageCodec
from beacon.config import Settings
from beacon.errors import NostrError
from beacon.kafka import AsyncProducer, TopicPartition, list_topic_offsets, make_consumer
from beacon.messages import BeaconMessage
from beacon.nostr import nip04, wire
from beacon.nostr.event import Event, UnsignedEvent
from beacon.nostr.keys import NostrKey
from beacon.nostr.relays import RelayPool


async def publish(pool: RelayPool, event: Event) -> None:
    """Publish, trying again while a loaded relay refuses (nostr-relay refuses when its database is busy)."""
    for attempt in range(5):
        try:
            await pool.publish(event, 15)
            return
        except NostrError:
            if attempt == 4:
                raise
            await asyncio.sleep(0.5 * (attempt + 1))


async def until(check: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


def read_all(settings: Settings, topic: str) -> list[tuple[bytes, list[tuple[str, bytes]]]]:
    """Every record of a one-partition topic (value, headers), read up to its end."""
    end = list_topic_offsets(settings, topic, [0], "latest")[0]
    consumer = make_consumer(settings, f"read-{time.time_ns()}")
    consumer.assign([TopicPartition(topic, 0, 0)])
    out: list[tuple[bytes, list[tuple[str, bytes]]]] = []
    deadline = time.monotonic() + 20
    while len(out) < end and time.monotonic() < deadline:
        record = consumer.poll(0.5)
        if record is not None and record.error() is None:
            out.append((record.value() or b"", list(record.headers() or [])))  # type: ignore[arg-type]
    consumer.close()
    return out


async def test_bad_events_are_dropped_and_counted_and_a_resent_message_is_produced_once(
    relay_url: str, registry_settings: Settings, new_topic: Callable[..., str]
) -> None:
    topic = new_topic(1, "nostr-in")
    core, edge, stranger = NostrKey.generate(), NostrKey.generate(), NostrKey.generate()
    codec = MessageCodec(registry_settings)
    producer = AsyncProducer(registry_settings)
    acks: asyncio.Queue[str] = asyncio.Queue()

    async def edge_event(event: Event, _url: str) -> None:
        item = parse(wire.open_event(edge, event, peers={core.pubkey}).payload)
        for message_id in getattr(item, "ids", ()):
            await acks.put(message_id)

    core_pool = RelayPool([relay_url], filters=[{"kinds": [30072], "#p": [core.pubkey]}])
    edge_pool = RelayPool([relay_url], filters=[{"kinds": [30072], "#p": [edge.pubkey]}], on_event=edge_event)

    async def send(target: str, payload: object) -> None:
        await publish(core_pool, wire.build(core, target, payload))

    receiver = Receiver(core, {edge.pubkey}, {"in": topic}, codec=codec, producer=producer, send=send,
                        on_ack=lambda _id: None, seen=SeenIds())
    core_pool._on_event = receiver.on_event
    await core_pool.start()
    await edge_pool.start()
    try:
        await core_pool.wait_connected(10)
        await edge_pool.wait_connected(10)
        msg = BeaconMessage.inbound_text(channel="whatsapp", account="acct", user_id="u1", text="héllo ✓",
                                         channel_message_id="wamid.1")
        good = wire.build(edge, core.pubkey, message_payload("in", msg))
        other = wire.build(edge, core.pubkey, message_payload("in", msg))
        forged = Event(other.id, other.pubkey, other.created_at, other.kind, other.tags, good.content, other.sig)
        foreign = wire.build(stranger, core.pubkey, message_payload("in", msg))
        # with a "d" tag as every NostrMQ event has: nostr-relay 1.14 fails every later kind-30072 event of an author
        # that stored one without ("list index out of range" in its NIP-33 replacement check)
        garbled = UnsignedEvent(30072, nip04.encrypt(edge, stranger.pubkey, "{}"),
                                [["p", core.pubkey], ["d", wire.unique_d()]]).sign(edge)
        not_bridge = wire.build(edge, core.pubkey, {"text": "just chatting"})
        wrong_topic = wire.build(edge, core.pubkey, message_payload("out", msg))
        for event in (forged, foreign, garbled, not_bridge, wrong_topic):
            await publish(edge_pool, event)
        await until(lambda: sum(receiver.dropped.values()) == 5, "five drops")
        assert receiver.dropped == {"signature": 1, "foreign": 1, "undecryptable": 1, "format": 1, "topic": 1}

        await publish(edge_pool, good)
        await publish(edge_pool, wire.build(edge, core.pubkey, message_payload("in", msg)))  # a re-send: new event
        assert await asyncio.wait_for(acks.get(), 20) == msg.id
        assert await asyncio.wait_for(acks.get(), 20) == msg.id
        assert (receiver.produced, receiver.duplicates) == (1, 1)
        records = await asyncio.to_thread(read_all, registry_settings, topic)
        assert len(records) == 1
        assert codec.decode(records[0][0], topic=topic) == msg
        assert (ID_HEADER, msg.id.encode()) in records[0][1]

        # After a restart the topic is the memory: a further re-send is acknowledged, not produced again.
        seen = SeenIds()
        assert await asyncio.to_thread(seen.load_from_topic, registry_settings, topic, 600) == 1
        assert msg.id in seen
    finally:
        await core_pool.close()
        await edge_pool.close()
        producer.close()
