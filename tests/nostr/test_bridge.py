"""Two Beacon sites joined by two ``beacon bridge nostr`` processes through a real relay: messages
entering the edge's bm_in reach the core's bm_in, the core's replies reach the edge's bm_out, in
order per user and exactly once, while either bridge is SIGKILLed mid-stream and the relay restarts.

The sites are two sets of topics on the shared test broker (and registry), with two data dirs; the
core's "workers" are an echo loop in the test.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from beacon.codec import MessageCodec
from beacon.config import Settings
from beacon.kafka import (
    AsyncProducer,
    TopicPartition,
    committed_offsets,
    list_topic_offsets,
    make_consumer,
    topic_partitions,
)
from beacon.messages import BeaconMessage
from beacon.nostr import relay_local
from beacon.nostr.keys import NostrKey
from beacon.ops.process import tail
from tests.nostr.conftest import relay_settings

USERS = [f"u{i}" for i in range(3)]
ACCOUNT = "106540352242922"


class BridgeProcess:
    """One ``beacon bridge nostr`` subprocess with its own environment and log."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env = env
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "beacon", "bridge", "nostr"], env=self.env,
                                         stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def kill(self) -> None:
        assert self.proc is not None and self.proc.poll() is None, f"bridge died early:\n{tail(self.log)}"
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def read_topic(settings: Settings, codec: MessageCodec, topic: str) -> list[BeaconMessage]:
    """Every message of ``topic`` up to its current end, partition by partition."""
    parts = topic_partitions(settings, topic)
    ends = list_topic_offsets(settings, topic, parts, "latest")
    consumer = make_consumer(settings, f"read-{time.time_ns()}")
    consumer.assign([TopicPartition(topic, p, 0) for p in parts if ends[p] > 0])
    out: list[BeaconMessage] = []
    want = sum(ends.values())
    deadline = time.monotonic() + 20
    while len(out) < want and time.monotonic() < deadline:
        record = consumer.poll(0.5)
        if record is not None and record.error() is None:
            out.append(codec.decode(record.value(), topic=topic))
    consumer.close()
    return out


def read_dlq(settings: Settings, topic: str) -> list[tuple[bytes, str]]:
    """(value, source topic) of every dead letter on a one-partition topic."""
    from beacon.dlq import H_TOPIC

    end = list_topic_offsets(settings, topic, [0], "latest")[0]
    consumer = make_consumer(settings, f"read-{time.time_ns()}")
    consumer.assign([TopicPartition(topic, 0, 0)])
    out: list[tuple[bytes, str]] = []
    deadline = time.monotonic() + 20
    while len(out) < end and time.monotonic() < deadline:
        record = consumer.poll(0.5)
        if record is not None and record.error() is None:
            headers: list[Any] = list(record.headers() or [])
            source = next((v.decode() for k, v in headers if k == H_TOPIC), "")
            out.append((record.value() or b"", source))
    consumer.close()
    return out


def all_committed(settings: Settings, group: str, topic: str) -> bool:
    parts = topic_partitions(settings, topic)
    ends = list_topic_offsets(settings, topic, parts, "latest")
    committed = committed_offsets(settings, group, topic)
    return all((committed.get((topic, p)) or 0) >= ends[p] for p in parts)


async def echo_worker(settings: Settings, codec: MessageCodec, source: str, target: str,
                      stop: asyncio.Event) -> None:
    """The core's workers, reduced to an echo: one reply on ``target`` per message on ``source``."""
    consumer = make_consumer(settings, f"echo-{time.time_ns()}")
    consumer.subscribe([source])
    producer = AsyncProducer(settings)
    try:
        while not stop.is_set():
            record = await asyncio.to_thread(consumer.poll, 0.2)
            if record is None or record.error() is not None:
                continue
            msg = codec.decode(record.value(), topic=source)
            reply = msg.reply_text(f"echo: {msg.text}")
            await producer.produce(target, codec.encode(reply, target), key=reply.user_key)
    finally:
        producer.close()
        await asyncio.to_thread(consumer.close)


async def until(check: Callable[[], bool], what: str, logs: list[Path], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not await asyncio.to_thread(check):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}\n" + "\n".join(f"{p}:\n{tail(p, 25)}" for p in logs))
        await asyncio.sleep(0.3)


@pytest.mark.slow
async def test_two_sites_keep_order_and_lose_or_double_nothing_through_kills_and_a_relay_restart(
    registry_settings: Settings, new_topic: Callable[..., str], unique: Callable[[str], str], tmp_path: Path
) -> None:
    settings = registry_settings
    relay = relay_settings(tmp_path / "relay")
    relay_local.start(relay)
    edge_in, edge_out, core_in, core_out = (new_topic(3, name) for name in ("edge-in", "edge-out", "core-in",
                                                                            "core-out"))
    edge_dlq = new_topic(1, "edge-dlq")
    edge_key, core_key = NostrKey.generate(), NostrKey.generate()
    edge_group, core_group = unique("bridge-edge"), unique("bridge-core")
    base = {k: v for k, v in os.environ.items() if not k.startswith("BEACON_")}
    base.update({
        "BEACON_KAFKA_BOOTSTRAP": settings.kafka.bootstrap,
        "BEACON_SCHEMA_REGISTRY_URL": settings.registry.url,
        "BEACON_NOSTR_RELAYS": json.dumps([relay_local.url(relay)]),
        "BEACON_NOSTR_BRIDGE_ACK_TIMEOUT": "1.0",
        "BEACON_NOSTR_BRIDGE_RETRY_BASE_DELAY": "0.1",
        "BEACON_NOSTR_BRIDGE_RETRY_MAX_DELAY": "1.0",
    })
    edge = BridgeProcess({**base, "BEACON_DATA_DIR": str(tmp_path / "edge"), "BEACON_TOPIC_IN": edge_in,
                          "BEACON_TOPIC_OUT": edge_out, "BEACON_TOPIC_DLQ": edge_dlq,
                          "BEACON_NOSTR_PRIVATE_KEY": edge_key.nsec,
                          "BEACON_NOSTR_PEERS": json.dumps([core_key.npub]), "BEACON_NOSTR_BRIDGE_ROLE": "edge",
                          "BEACON_NOSTR_BRIDGE_CORE": core_key.pubkey, "BEACON_NOSTR_BRIDGE_GROUP": edge_group},
                         tmp_path / "edge.log")
    core = BridgeProcess({**base, "BEACON_DATA_DIR": str(tmp_path / "core"), "BEACON_TOPIC_IN": core_in,
                          "BEACON_TOPIC_OUT": core_out, "BEACON_NOSTR_PRIVATE_KEY": core_key.secret.hex(),
                          "BEACON_NOSTR_PEERS": json.dumps([edge_key.pubkey]), "BEACON_NOSTR_BRIDGE_ROLE": "core",
                          "BEACON_NOSTR_BRIDGE_ROUTES": json.dumps({f"whatsapp:{ACCOUNT}": edge_key.npub}),
                          "BEACON_NOSTR_BRIDGE_GROUP": core_group},
                         tmp_path / "core.log")
    logs = [edge.log, core.log, relay.log_dir / "relay.log"]
    codec = MessageCodec(settings)
    producer = AsyncProducer(settings)
    stop = asyncio.Event()
    echo = asyncio.create_task(echo_worker(settings, codec, core_in, core_out, stop))
    sent: list[BeaconMessage] = []

    async def users_write(count: int) -> None:
        for _ in range(count):
            for user in USERS:
                n = len(sent)
                msg = BeaconMessage.inbound_text(channel="whatsapp", account=ACCOUNT, user_id=user,
                                                 text=f"{user} #{n} ünï", channel_message_id=f"wamid.{n}")
                await producer.produce(edge_in, codec.encode(msg, edge_in), key=msg.user_key)
                sent.append(msg)

    def count(topic: str) -> int:
        return len(read_topic(settings, codec, topic))

    try:
        edge.start()
        core.start()
        await producer.produce(edge_in, b"not a BeaconMessage", key="whatsapp:x:garbage")
        await users_write(5)
        await until(lambda: count(core_in) >= 3, "the first messages at the core", logs)
        edge.kill()  # mid-stream: some messages sent, not yet acknowledged or committed
        await users_write(5)
        edge.start()
        await until(lambda: count(edge_out) >= 10, "replies at the edge", logs)
        core.kill()
        core.start()
        await until(lambda: count(core_in) >= 24, "messages after the core's restart", logs)
        relay_local.stop(relay)
        await users_write(5)
        relay_local.start(relay)
        # A reply for another account on the core's bm_out: no route, so it stays at the core.
        stranger = BeaconMessage.inbound_text(channel="whatsapp", account="other", user_id="x", text="hi")
        local = stranger.reply_text("not for the edge")
        await producer.produce(core_out, codec.encode(local, core_out), key=local.user_key)
        await until(lambda: count(edge_out) >= len(sent), "every reply at the edge", logs, timeout=90)
        # Work finished: both bridges committed everything they read, so nothing is still on its way.
        await until(lambda: all_committed(settings, edge_group, edge_in) and all_committed(settings, core_group,
                                                                                           core_out),
                    "the bridges' commits", logs)

        at_core = await asyncio.to_thread(read_topic, settings, codec, core_in)
        at_edge = await asyncio.to_thread(read_topic, settings, codec, edge_out)
        assert sorted(m.id for m in at_core) == sorted(m.id for m in sent)  # none lost, none doubled
        assert len(at_edge) == len(sent) and {m.reply_to_id for m in at_edge} == {m.id for m in sent}
        assert local.id not in {m.id for m in at_edge}  # the core committed past it without sending it
        dead = await asyncio.to_thread(read_dlq, settings, edge_dlq)
        # What cannot cross is dead-lettered (twice if the edge was killed between that and its commit).
        assert dead and set(dead) == {(b"not a BeaconMessage", edge_in)}
        for user in USERS:
            key = f"whatsapp:{ACCOUNT}:{user}"
            order = [m.id for m in sent if m.user_key == key]
            assert [m.id for m in at_core if m.user_key == key] == order
            assert [m.reply_to_id for m in at_edge if m.user_key == key] == order
        assert at_core[0].text is not None and "ünï" in at_core[0].text
    finally:
        stop.set()
        await echo
        edge.stop()
        core.stop()
        producer.close()
        relay_local.stop(relay)
