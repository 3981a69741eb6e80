"""``beacon bench nostr``: messages/s and latency through ``beacon bridge nostr`` (edge -> relay ->
core, acknowledged), beside the relay's own publish -> receive round trip measured in the same run.

Starts its own relay (free port, temporary data dir) and two bridge processes on fresh topics of
the configured broker and registry (deleted afterwards). The relay figures are what the bridge
rides on: each bridged message costs two relay trips (the message and its acknowledgement) plus a
produce, and one message per user is in flight at a time.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from beacon.codec import MessageCodec
from beacon.config import Settings
from beacon.errors import BeaconError
from beacon.kafka import (
    AsyncProducer,
    KafkaException,
    TopicPartition,
    TopicSpec,
    ensure_topics,
    make_admin,
    make_consumer,
    topic_partitions,
)
from beacon.kafka_security import connection_environment
from beacon.messages import BeaconMessage
from beacon.nostr import relay_local, wire
from beacon.nostr.event import Event
from beacon.nostr.keys import NostrKey
from beacon.nostr.relays import RelayPool
from beacon.ops.process import free_port, tail


@dataclass
class Figures:
    relay_rtt_p50_ms: float = 0.0
    relay_rtt_p99_ms: float = 0.0
    relay_events_per_s: float = 0.0
    bridge_per_s: float = 0.0
    bridge_arrived: int = 0
    relay_burst: int = 0
    bridge_p50_ms: float = 0.0
    bridge_p99_ms: float = 0.0
    paced_rate: float = 0.0


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] * 1000 if ordered else 0.0


async def _relay_baseline(url: str, rounds: int, burst: int, figures: Figures) -> None:
    """Publish -> subscriber receipt: sequential round trips, then a burst published 50 at a time."""
    sender, receiver = NostrKey.generate(), NostrKey.generate()
    arrived: dict[str, float] = {}
    got = asyncio.Event()

    async def on_event(event: Event, _url: str) -> None:
        arrived[event.id] = time.perf_counter()
        got.set()

    sub = RelayPool([url], on_event=on_event, filters=[{"kinds": [wire.KIND], "#p": [receiver.pubkey]}])
    pub = RelayPool([url])
    await sub.start()
    await pub.start()
    try:
        await sub.wait_connected(10)
        await pub.wait_connected(10)
        rtts = []
        for i in range(rounds):
            event = wire.build(sender, receiver.pubkey, {"i": i})
            start = time.perf_counter()
            got.clear()
            await pub.publish(event, 10)
            while event.id not in arrived:
                await asyncio.wait_for(got.wait(), 10)
                got.clear()
            rtts.append(arrived[event.id] - start)
        figures.relay_rtt_p50_ms, figures.relay_rtt_p99_ms = _pct(rtts, 0.5), _pct(rtts, 0.99)
        events = [wire.build(sender, receiver.pubkey, {"b": i}) for i in range(burst)]
        start = time.perf_counter()
        for i in range(0, burst, 50):
            await asyncio.gather(*(pub.publish(e, 30) for e in events[i:i + 50]))
        deadline = time.monotonic() + 60
        while not all(e.id in arrived for e in events) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        figures.relay_events_per_s = burst / (max(arrived.get(e.id, 0.0) for e in events) - start)
    finally:
        await sub.close()
        await pub.close()


def _bridge(settings: Settings, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "beacon", "bridge", "nostr"], env=env, stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


async def _arrivals(settings: Settings, codec: MessageCodec, topic: str, wanted: set[str], timeout: float,
                    arrived: dict[str, float]) -> None:
    """Record when each message of ``wanted`` appears on ``topic`` (read from the start)."""
    consumer = make_consumer(settings, f"bench-nostr-{uuid.uuid4().hex[:8]}")
    # Assigned, not subscribed: no group join delays the first arrivals.
    consumer.assign([TopicPartition(topic, p, 0) for p in topic_partitions(settings, topic)])
    deadline = time.monotonic() + timeout
    try:
        while len(arrived) < len(wanted) and time.monotonic() < deadline:
            record = await asyncio.to_thread(consumer.poll, 0.2)
            if record is not None and record.error() is None:
                msg = codec.decode(record.value(), topic=topic)
                if msg.id in wanted:
                    arrived.setdefault(msg.id, time.time())
    finally:
        await asyncio.to_thread(consumer.close)


async def bench(settings: Settings, *, messages: int, users: int, paced_rate: float, paced_seconds: float,
                relay_rounds: int) -> Figures:
    figures = Figures(paced_rate=paced_rate)
    tmp = Path(tempfile.mkdtemp(prefix="beacon-bench-nostr-"))
    relay = settings.replace(data_dir=tmp / "relay", nostr_relay_port=free_port())
    relay_local.start(relay)
    run = uuid.uuid4().hex[:8]
    topics = {name: f"bench-nostr-{name}-{run}" for name in ("edge-in", "edge-out", "core-in", "core-out")}
    ensure_topics(settings, [TopicSpec(t, settings.topics.partitions, 1, {}) for t in topics.values()], strict=True)
    procs: list[tuple[subprocess.Popen[bytes], Path]] = []
    producer = AsyncProducer(settings)
    try:
        url = relay_local.url(relay)
        figures.relay_burst = messages
        await _relay_baseline(url, relay_rounds, messages, figures)
        edge_key, core_key = NostrKey.generate(), NostrKey.generate()
        base = {k: v for k, v in os.environ.items() if not k.startswith("BEACON_")}
        base.update(connection_environment(settings))
        base.update({"BEACON_NOSTR_RELAYS": json.dumps([url]), "BEACON_LOG_LEVEL": "WARNING"})
        edge_env = {**base, "BEACON_DATA_DIR": str(tmp / "edge"), "BEACON_TOPIC_IN": topics["edge-in"],
                    "BEACON_TOPIC_OUT": topics["edge-out"], "BEACON_NOSTR_PRIVATE_KEY": edge_key.nsec,
                    "BEACON_NOSTR_PEERS": json.dumps([core_key.pubkey]), "BEACON_NOSTR_BRIDGE_CORE": core_key.pubkey,
                    "BEACON_NOSTR_BRIDGE_GROUP": f"bench-edge-{run}"}
        core_env = {**base, "BEACON_DATA_DIR": str(tmp / "core"), "BEACON_TOPIC_IN": topics["core-in"],
                    "BEACON_TOPIC_OUT": topics["core-out"], "BEACON_NOSTR_PRIVATE_KEY": core_key.nsec,
                    "BEACON_NOSTR_PEERS": json.dumps([edge_key.pubkey]), "BEACON_NOSTR_BRIDGE_ROLE": "core",
                    "BEACON_NOSTR_BRIDGE_ROUTES": json.dumps({"bench": edge_key.pubkey}),
                    "BEACON_NOSTR_BRIDGE_GROUP": f"bench-core-{run}"}
        for name, env in (("edge", edge_env), ("core", core_env)):
            log = tmp / f"{name}.log"
            procs.append((_bridge(settings, env, log), log))
        codec = MessageCodec(settings)
        source, target = topics["edge-in"], topics["core-in"]

        def make(i: int) -> BeaconMessage:
            return BeaconMessage.inbound_text(channel="bench", account="acct", user_id=f"user{i % users}",
                                              text=f"bench {i} café", channel_message_id=f"{run}-{i}")

        # Warm-up: the bridges are up and the path works end to end.
        arrived: dict[str, float] = {}
        warm = make(-1)
        await producer.produce(source, codec.encode(warm, source), key=warm.user_key)
        await _arrivals(settings, codec, target, {warm.id}, 60, arrived)
        if warm.id not in arrived:
            raise BeaconError("the bridges did not carry a first message within 60 s:\n" +
                              "\n".join(f"{log}:\n{tail(log)}" for _, log in procs))

        # Throughput: everything produced at once, over `users` users.
        batch = [make(i) for i in range(messages)]
        sent_at = time.time()
        await asyncio.gather(*(producer.produce(source, codec.encode(m, source), key=m.user_key) for m in batch))
        arrived = {}
        await _arrivals(settings, codec, target, {m.id for m in batch}, 300, arrived)
        figures.bridge_arrived = len(arrived)
        if arrived:
            figures.bridge_per_s = len(arrived) / (max(arrived.values()) - sent_at)
        if len(arrived) < messages:
            raise BeaconError(f"only {len(arrived)} of {messages} messages crossed the bridge within 300 s "
                              f"({figures.bridge_per_s:.1f}/s); try fewer --messages")

        # Latency at a paced rate.
        paced: dict[str, float] = {}
        sent: dict[str, float] = {}
        pacing = [make(messages + i) for i in range(int(paced_rate * paced_seconds))]
        reader = asyncio.create_task(_arrivals(settings, codec, target, {m.id for m in pacing}, paced_seconds + 60,
                                               paced))
        start = time.monotonic()
        for i, msg in enumerate(pacing):
            await asyncio.sleep(max(0.0, start + i / paced_rate - time.monotonic()))
            sent[msg.id] = time.time()
            await producer.produce(source, codec.encode(msg, source), key=msg.user_key)
        await reader
        latencies = [paced[i] - sent[i] for i in sent if i in paced]
        figures.bridge_p50_ms, figures.bridge_p99_ms = _pct(latencies, 0.5), _pct(latencies, 0.99)
        return figures
    finally:
        producer.close()
        for proc, _ in procs:
            proc.terminate()
        for proc, _ in procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
        relay_local.stop(relay)
        admin = make_admin(settings)
        for future in admin.delete_topics(list(topics.values()), operation_timeout=10).values():
            try:
                future.result(timeout=20)
            except KafkaException as exc:
                print(f"could not delete a bench topic: {exc}", file=sys.stderr)


def report(f: Figures, *, messages: int, users: int) -> str:
    return "\n".join([
        "beacon bench nostr (edge bridge -> local relay -> core bridge, each message acknowledged)",
        f"  relay publish -> receive:   p50 {f.relay_rtt_p50_ms:.1f} ms, p99 {f.relay_rtt_p99_ms:.1f} ms; "
        f"{f.relay_events_per_s:,.0f} events/s ({f.relay_burst} published 50 at a time)",
        f"  bridge, {messages} messages over {users} users: {f.bridge_per_s:,.0f} messages/s edge bm_in -> core bm_in",
        f"  bridge at {f.paced_rate:.0f}/s:           p50 {f.bridge_p50_ms:.1f} ms, p99 {f.bridge_p99_ms:.1f} ms "
        "(edge produce -> core bm_in)",
    ])
