"""``beacon gateway nostr`` end to end: a NostrMQ client written from the format (``beacon.nostr.wire``
as the client side) talks through a real local relay to the real gateway process, which produces to
the real broker, where a real worker and API answer; the replies come back as NostrMQ messages.

Each "not answered" is proven after a later message of the same sender was answered: per-sender order
holds end to end, so an answer to the earlier event would have come first.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from beacon.codec import MessageCodec
from beacon.config import Settings
from beacon.kafka import ensure_topics
from beacon.nostr import wire
from beacon.nostr.event import Event
from beacon.nostr.keys import NostrKey
from beacon.nostr.relays import RelayPool
from beacon.ops.process import free_port, port_open, tail
from beacon.ops.supervisor import ProcessSpec, Supervisor
from tests.nostr.conftest import relay_settings
from tests.ops.stack import Stack, wait_for

pytestmark = pytest.mark.slow

BEACON = NostrKey.generate()


@dataclass
class Client:
    """A NostrMQ user: its key, its own relay connection, the replies it received (decrypted)."""

    key: NostrKey
    pool: RelayPool
    replies: list[dict[str, Any]] = field(default_factory=list)

    async def send(self, text: str | None = None, *, payload: Any = None, created_at: int | None = None) -> Event:
        event = wire.build(self.key, BEACON.pubkey, {"text": text} if payload is None else payload,
                           created_at=created_at)
        await self.pool.publish(event)
        return event

    async def wait_replies(self, n: int, timeout: float = 45.0) -> list[dict[str, Any]]:
        async def enough() -> None:
            while len(self.replies) < n:
                await asyncio.sleep(0.05)

        try:
            await asyncio.wait_for(enough(), timeout)
        except TimeoutError:
            raise AssertionError(f"{len(self.replies)} of {n} replies after {timeout:.0f}s: {self.replies}") from None
        return self.replies

    def texts(self) -> list[str]:
        return [r["payload"]["text"] for r in self.replies]


async def connect(*relays: str) -> Client:
    key = NostrKey.generate()
    client: Client

    async def on_event(event: Event, _relay: str) -> None:
        received = wire.open_event(key, event)
        assert received.sender == BEACON.pubkey
        client.replies.append({"payload": received.payload, "d": received.d})

    pool = RelayPool(list(relays), on_event=on_event, filters=[{"kinds": [wire.KIND], "#p": [key.pubkey]}])
    client = Client(key, pool)
    await pool.start()
    await pool.wait_connected(10)
    return client


@pytest.fixture(scope="module")
def second_relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Another relay the gateway also listens to: the same event arrives from both."""
    from beacon.nostr import relay_local

    settings = relay_settings(tmp_path_factory.mktemp("relay2"))
    status, _ = relay_local.start(settings, verify_signatures=False)
    yield status.url
    relay_local.stop(settings)


@dataclass
class Running:
    """The supervised processes of one module's stack, and the NostrMQ gateway's spec and port."""

    stack: Stack
    sup: Supervisor
    gateway: ProcessSpec
    port: int

    def restart_gateway(self) -> None:
        """Stop the gateway cleanly (SIGTERM) and start it again."""
        self.sup.remove(self.gateway.name)
        wait_for(lambda: not port_open("127.0.0.1", self.port), "the NostrMQ gateway to stop")
        self.sup.add(self.gateway)
        wait_for(lambda: port_open("127.0.0.1", self.port), "the NostrMQ gateway to listen again", step=self.sup.poll)


@pytest.fixture(scope="module")
def stack(registry_settings: Settings, relay_url: str, second_relay: str,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    """The API, one worker and the NostrMQ gateway, supervised, on fresh topics and ports."""
    import uuid

    tmp = tmp_path_factory.mktemp("nostrgw")
    stack = Stack.create(registry_settings, lambda p: f"{p}-{uuid.uuid4().hex[:8]}", tmp, workers=1)
    s = stack.settings
    ensure_topics(s)
    MessageCodec(s).prepare([s.topic_in, s.topic_out])
    migrated = stack.beacon("api", "migrate")
    assert migrated.returncode == 0, migrated.stderr
    port = free_port()
    nostr_env = {
        "BEACON_NOSTR_PRIVATE_KEY": BEACON.nsec, "BEACON_NOSTR_RELAYS": json.dumps([relay_url, second_relay]),
        # wide enough that the test's events published within it are reordered whatever the machine's load
        "BEACON_NOSTR_REORDER_WINDOW": "1.0",
        "BEACON_NOSTR_GATEWAY_PORT": str(port), "BEACON_NOSTR_GATEWAY_GROUP": f"{s.topic_out}-nostr",
    }
    specs = [sp for sp in stack.specs() if sp.name in {"api", "worker-1"}]
    gateway = ProcessSpec("gateway-nostr", [sys.executable, "-m", "beacon", "gateway", "nostr"],
                          env={**stack.env, **nostr_env})
    specs.append(gateway)
    sup = Supervisor(tmp / "logs", report=print)
    try:
        for spec in specs:
            sup.add(spec)
        wait_for(lambda: port_open("127.0.0.1", s.api_port) and port_open("127.0.0.1", port),
                 "the API and the NostrMQ gateway to listen", step=sup.poll)
        yield Running(stack, sup, gateway, port)
    finally:
        sup.stop()
        log = tmp / "logs" / "gateway-nostr.log"
        if log.exists():
            print(tail(log))


def _metric(stack: Running, name: str, labels: str) -> float:
    import httpx

    text = httpx.get(f"http://127.0.0.1:{stack.port}/metrics", timeout=10).text
    for line in text.splitlines():
        if line.startswith(name) and labels in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_ping_is_answered_pong_as_a_nostrmq_reply_to_its_d(stack: Running, relay_url: str) -> None:
    client = await connect(relay_url)
    try:
        question = await client.send("/ping")
        [reply] = await client.wait_replies(1)
        assert reply["payload"] == {"text": "pong", "in_reply_to": question.tag("d")}
        assert reply["d"] and reply["d"] != question.tag("d")
    finally:
        await client.pool.close()


async def test_non_ascii_text_round_trips(stack: Running, relay_url: str) -> None:
    client = await connect(relay_url)
    try:
        await client.send("héllo ✓ 日本語 🚀")
        await client.wait_replies(1)
        assert client.texts() == ["You said: héllo ✓ 日本語 🚀"]
    finally:
        await client.pool.close()


async def test_the_same_event_from_two_relays_and_published_again_is_answered_once(
        stack: Running, relay_url: str, second_relay: str) -> None:
    client = await connect(relay_url, second_relay)
    try:
        event = await client.send("once")  # to both relays: the gateway receives it from each
        await client.wait_replies(1)
        await client.pool.publish(event)  # again ("duplicate:" from each relay), then a later message
        await client.send("after")
        await client.wait_replies(2)
        assert client.texts() == ["You said: once", "You said: after"]
    finally:
        await client.pool.close()


async def test_a_bad_signature_and_an_undecryptable_event_are_dropped_and_counted(stack: Running,
                                                                                   relay_url: str) -> None:
    client = await connect(relay_url)
    stranger = NostrKey.generate()
    dropped_sig = _metric(stack, "beacon_gateway_webhook_dropped_total", 'what="signature"')
    dropped_dec = _metric(stack, "beacon_gateway_webhook_dropped_total", 'what="undecryptable"')
    try:
        good = wire.build(client.key, BEACON.pubkey, {"text": "forged"})
        forged = Event(good.id, good.pubkey, good.created_at, good.kind, good.tags, good.content, "00" * 64)
        await client.pool.publish(forged)  # the test relay stores events without checking signatures
        # encrypted to someone else's key, but addressed to Beacon: it does not decrypt
        undecryptable = wire.build(client.key, stranger.pubkey, {"text": "secret"})
        tags = [["p", BEACON.pubkey], *[t for t in undecryptable.tags if t[0] != "p"]]
        from beacon.nostr.event import UnsignedEvent

        readdressed = UnsignedEvent(wire.KIND, undecryptable.content, tags).sign(client.key)
        await client.pool.publish(readdressed)
        await client.send("/ping")
        await client.wait_replies(1)
        assert client.texts() == ["pong"]
        assert _metric(stack, "beacon_gateway_webhook_dropped_total", 'what="signature"') == dropped_sig + 1
        assert _metric(stack, "beacon_gateway_webhook_dropped_total", 'what="undecryptable"') == dropped_dec + 1
    finally:
        await client.pool.close()


async def test_one_senders_messages_are_answered_in_created_at_order(stack: Running, relay_url: str) -> None:
    client = await connect(relay_url)
    try:
        import time

        now = int(time.time())
        # published newest first within one reorder window: the gateway produces them by created_at
        for i in reversed(range(3)):
            await client.send(f"m{i}", created_at=now - 3 + i)
        for i in range(3, 6):
            await client.send(f"m{i}", created_at=now + i)
        await client.wait_replies(6)
        assert client.texts() == [f"You said: m{i}" for i in range(6)]
    finally:
        await client.pool.close()


async def test_an_event_received_again_after_a_restart_is_answered_once(stack: Running, relay_url: str) -> None:
    """The restarted gateway re-subscribes from a minute back and gets the question again: the same event id
    is the same BeaconMessage id, so the API and the sender engine answer it once."""
    client = await connect(relay_url)
    try:
        await client.send("before the restart")
        await client.wait_replies(1)
        await asyncio.to_thread(stack.restart_gateway)
        await client.send("after the restart")
        await client.wait_replies(2)
        assert client.texts() == ["You said: before the restart", "You said: after the restart"]
        # the premise: the restarted gateway (its counters fresh) produced the first question again
        assert _metric(stack, "beacon_gateway_webhook_messages_total", 'channel="nostr"') == 2
    finally:
        await client.pool.close()
