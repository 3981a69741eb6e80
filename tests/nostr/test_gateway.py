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
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from beacon.codec import MessageCodec
from beacon.config import Settings
from beacon.kafka import ensure_topics
from beacon.nostr import relay_local, wire
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
def relays(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Settings]]:
    """Two relays of this module's own (so a test may stop them): the gateway listens to both. They store events
    without checking signatures, as a careless public relay might, so a forged event reaches the gateway."""
    settings = [relay_settings(tmp_path_factory.mktemp(f"relay{i}")) for i in range(2)]
    for s in settings:
        relay_local.start(s, verify_signatures=False)
    yield settings
    for s in settings:
        relay_local.stop(s)


@dataclass
class Running:
    """The supervised processes of one module's stack, and the NostrMQ gateway's spec and port."""

    stack: Stack
    sup: Supervisor
    gateway: ProcessSpec
    worker: ProcessSpec
    port: int
    relay_settings: list[Settings]

    @property
    def relays(self) -> list[str]:
        return [relay_local.url(s) for s in self.relay_settings]

    def restart_gateway(self) -> None:
        """Stop the gateway cleanly (SIGTERM) and start it again."""
        self.sup.remove(self.gateway.name)
        wait_for(lambda: not port_open("127.0.0.1", self.port), "the NostrMQ gateway to stop")
        self.sup.add(self.gateway)
        wait_for(lambda: port_open("127.0.0.1", self.port), "the NostrMQ gateway to listen again", step=self.sup.poll)


@pytest.fixture(scope="module")
def stack(registry_settings: Settings, relays: list[Settings],
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    """The API, one worker and the NostrMQ gateway, supervised, on fresh topics and ports."""

    tmp = tmp_path_factory.mktemp("nostrgw")
    stack = Stack.create(registry_settings, lambda p: f"{p}-{uuid.uuid4().hex[:8]}", tmp, workers=1)
    s = stack.settings
    ensure_topics(s)
    MessageCodec(s).prepare([s.topics.inbound, s.topics.outbound])
    migrated = stack.beacon("api", "migrate")
    assert migrated.returncode == 0, migrated.stderr
    port = free_port()
    nostr_env = {
        "BEACON_NOSTR_PRIVATE_KEY": BEACON.nsec,
        "BEACON_NOSTR_RELAYS": json.dumps([relay_local.url(r) for r in relays]),
        # wide enough that the test's events published within it are reordered whatever the machine's load
        "BEACON_NOSTR_REORDER_WINDOW": "1.0",
        "BEACON_NOSTR_GATEWAY_PORT": str(port), "BEACON_NOSTR_GATEWAY_GROUP": f"{s.topics.outbound}-nostr",
    }
    specs = [sp for sp in stack.specs() if sp.name in {"api", "worker-1"}]
    gateway = ProcessSpec("gateway-nostr", [sys.executable, "-m", "beacon", "gateway", "nostr"],
                          env={**stack.env, **nostr_env})
    specs.append(gateway)
    sup = Supervisor(tmp / "logs", report=print)
    try:
        for spec in specs:
            sup.add(spec)
        wait_for(lambda: port_open("127.0.0.1", s.api.port) and port_open("127.0.0.1", port),
                 "the API and the NostrMQ gateway to listen", step=sup.poll)
        worker = next(sp for sp in specs if sp.name == "worker-1")
        yield Running(stack, sup, gateway, worker, port, relays)
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


async def test_ping_is_answered_pong_as_a_nostrmq_reply_to_its_d(stack: Running) -> None:
    client = await connect(stack.relays[0])
    try:
        question = await client.send("/ping")
        [reply] = await client.wait_replies(1)
        assert reply["payload"] == {"text": "pong", "in_reply_to": question.tag("d")}
        assert reply["d"] and reply["d"] != question.tag("d")
    finally:
        await client.pool.close()


def test_beacon_nostr_say_plays_a_user_and_prints_the_reply(stack: Running) -> None:
    said = stack.stack.beacon("nostr", "say", "--to", BEACON.npub, "--relay", stack.relays[0], "/ping",
                              "--timeout", "45")
    assert said.returncode == 0, said.stderr
    assert said.stdout.splitlines() == ["pong"]
    other = NostrKey.generate()  # a pubkey nobody answers for
    silent = stack.stack.beacon("nostr", "say", "--to", other.npub, "--relay", stack.relays[0], "hello",
                                "--timeout", "2")
    assert silent.returncode == 1 and "no reply from" in silent.stderr


async def test_non_ascii_text_round_trips(stack: Running) -> None:
    client = await connect(stack.relays[0])
    try:
        await client.send("héllo ✓ 日本語 🚀")
        await client.wait_replies(1)
        assert client.texts() == ["You said: héllo ✓ 日本語 🚀"]
    finally:
        await client.pool.close()


async def test_the_same_event_from_two_relays_and_published_again_is_answered_once(
        stack: Running) -> None:
    client = await connect(*stack.relays)
    try:
        event = await client.send("once")  # to both relays: the gateway receives it from each
        await client.wait_replies(1)
        await client.pool.publish(event)  # again ("duplicate:" from each relay), then a later message
        await client.send("after")
        await client.wait_replies(2)
        assert client.texts() == ["You said: once", "You said: after"]
    finally:
        await client.pool.close()


async def test_a_bad_signature_and_an_undecryptable_event_are_dropped_and_counted(stack: Running) -> None:
    client = await connect(stack.relays[0])
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


async def test_one_senders_messages_are_answered_in_created_at_order(stack: Running) -> None:
    client = await connect(stack.relays[0])
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


async def test_an_event_received_again_after_a_restart_is_answered_once(stack: Running) -> None:
    """The restarted gateway re-subscribes from a minute back and gets the question again: the same event id
    is the same BeaconMessage id, so the API and the sender engine answer it once."""
    client = await connect(stack.relays[0])
    try:
        await client.send("before the restart")
        await client.wait_replies(1)
        await asyncio.to_thread(stack.restart_gateway)
        await client.send("after the restart")
        await client.wait_replies(2)
        assert client.texts() == ["You said: before the restart", "You said: after the restart"]
        # the premise: the restarted gateway (its counters fresh) produced the first question again (and the
        # questions of this module's earlier tests, all from the last minute)
        assert _metric(stack, "beacon_gateway_webhook_messages_total", 'channel="nostr"') >= 2
    finally:
        await client.pool.close()


async def until(condition: Callable[[], bool], what: str, timeout: float = 45.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await asyncio.to_thread(condition):
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        await asyncio.sleep(0.2)


async def test_a_reply_while_no_relay_is_up_is_published_once_they_return(stack: Running) -> None:
    """Every relay down when the reply is ready: the publish fails, is retried as an outage, and goes out
    once the relays are back (they keep their events, so the client gets it on re-subscribing)."""
    client = await connect(*stack.relays)
    taken = _metric(stack, "beacon_gateway_webhook_messages_total", 'channel="nostr"')
    failed = _metric(stack, "beacon_gateway_send_errors_total", 'channel="nostr"')
    try:
        await asyncio.to_thread(stack.sup.remove, stack.worker.name)  # the reply waits until the relays are down
        question = await client.send("/ping")
        await until(lambda: _metric(stack, "beacon_gateway_webhook_messages_total", 'channel="nostr"') > taken,
                    "the gateway to produce the question")
        for relay in stack.relay_settings:
            await asyncio.to_thread(relay_local.stop, relay)
        await asyncio.to_thread(stack.sup.add, stack.worker)
        await until(lambda: _metric(stack, "beacon_gateway_send_errors_total", 'channel="nostr"') > failed,
                    "the reply's publish to fail with no relay up", timeout=90)
        for relay in stack.relay_settings:
            await asyncio.to_thread(relay_local.start, relay, verify_signatures=False)
        [reply] = await client.wait_replies(1, timeout=60)
        assert reply["payload"] == {"text": "pong", "in_reply_to": question.tag("d")}
        await client.send("later")  # answered after any second copy of the pong would have been
        await client.wait_replies(2)
        assert client.texts() == ["pong", "You said: later"]
    finally:
        if stack.worker.name not in stack.sup.children:
            stack.sup.add(stack.worker)
        for relay in stack.relay_settings:
            relay_local.start(relay, verify_signatures=False)  # harmless when it runs
        await client.pool.close()
