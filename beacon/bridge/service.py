"""``beacon bridge nostr``: one process joining this deployment to its peers over NostrMQ.

An edge forwards ``bm_in`` (all of it, or the users under ``BEACON_NOSTR_BRIDGE_FORWARD``) to its
core and takes the core's replies into ``bm_out``; a core takes its edges' messages into ``bm_in``
and forwards the replies of each routed channel and account from ``bm_out`` to its edge.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Any

from beacon.bridge.forward import Forwarder
from beacon.bridge.payload import Topic
from beacon.bridge.receive import Receiver
from beacon.bridge.routes import Routes
from beacon.bridge.seen import SeenIds
from beacon.codec import MessageCodec, get_codec
from beacon.config import Settings
from beacon.errors import ConfigError
from beacon.kafka import AsyncProducer
from beacon.nostr import wire
from beacon.nostr.keys import NostrKey, parse_public_key
from beacon.nostr.relays import RelayPool

log = logging.getLogger("beacon.bridge")


def load_key(settings: Settings) -> NostrKey:
    """This deployment's key from BEACON_NOSTR_PRIVATE_KEY (ConfigError when unset or malformed)."""
    if settings.nostr.private_key is None:
        raise ConfigError("BEACON_NOSTR_PRIVATE_KEY is not set; make one with `beacon nostr keygen`")
    try:
        return NostrKey.parse(settings.nostr.private_key.get_secret_value())
    except ValueError as exc:
        raise ConfigError(f"BEACON_NOSTR_PRIVATE_KEY: {exc}") from exc


def load_peers(settings: Settings) -> set[str]:
    try:
        return {parse_public_key(p) for p in settings.nostr.peers}
    except ValueError as exc:
        raise ConfigError(f"BEACON_NOSTR_PEERS: {exc}") from exc


class Bridge:
    """The relay pool, the receiver and the forwarder of one deployment."""

    def __init__(self, settings: Settings, codec: MessageCodec | None = None) -> None:
        self.settings = settings
        self.key = load_key(settings)
        self.peers = load_peers(settings)
        self.routes = Routes.from_settings(settings)
        missing = self.routes.peers - self.peers
        if missing:
            raise ConfigError(f"BEACON_NOSTR_PEERS must list every pubkey this bridge sends to; missing "
                              f"{sorted(missing)}")
        self.codec = codec or get_codec(settings)
        edge = settings.bridge.role == "edge"
        self.source, carried = (settings.topics.inbound, "in") if edge else (settings.topics.outbound, "out")
        self.destination, taken = (settings.topics.outbound, "out") if edge else (settings.topics.inbound, "in")
        self.carried: Topic = carried  # type: ignore[assignment]
        self.taken: Topic = taken  # type: ignore[assignment]
        self.pool = RelayPool(list(settings.nostr.relays), filters=[{"kinds": [wire.KIND], "#p": [self.key.pubkey]}],
                              on_event=self._on_event)
        self.producer: AsyncProducer | None = None
        self.receiver: Receiver | None = None
        self.forwarder = Forwarder(settings, self.source, self.carried, self.routes, codec=self.codec, send=self.send)

    async def send(self, target: str, payload: Any) -> None:
        """One NostrMQ message to ``target``, accepted by at least one relay (NostrError otherwise)."""
        event = wire.build(self.key, target, payload, expires_in=self.settings.nostr.event_ttl)
        await self.pool.publish(event, self.settings.nostr.publish_timeout)

    async def _on_event(self, event: Any, relay: str) -> None:
        if self.receiver is not None:
            await self.receiver.on_event(event, relay)

    async def run(self, stop: asyncio.Event) -> None:
        settings = self.settings
        await asyncio.to_thread(self.codec.prepare, [self.source, self.destination])
        seen = SeenIds()
        found = await asyncio.to_thread(seen.load_from_topic, settings, self.destination,
                                        settings.bridge.dedupe_window)
        self.producer = AsyncProducer(settings)
        self.receiver = Receiver(self.key, self.peers, {self.taken: self.destination}, codec=self.codec,
                                 producer=self.producer, send=self.send,
                                 on_ack=self.forwarder.acknowledged_by_peer, seen=seen)
        await self.pool.start()
        log.info("bridge %s (%s) up: forwards %s to %s, takes %s into %s from %d peer(s) via %s; remembered %d "
                 "bridged id(s) from the last %.0fs of %s", self.key.pubkey, settings.bridge.role,
                 self.source, sorted(self.routes.peers), self.taken, self.destination, len(self.peers),
                 list(settings.nostr.relays), found, settings.bridge.dedupe_window, self.destination)
        try:
            await self.forwarder.run(stop, self.producer)
        finally:
            await self.pool.close()
            self.producer.close()
            r = self.receiver
            log.info("bridge stopped: %d acknowledged by peers, %d re-sends, %d left unrouted; took %d, %d copies "
                     "answered from memory, dropped %s", self.forwarder.acknowledged, self.forwarder.resends,
                     self.forwarder.skipped, r.produced, r.duplicates, dict(r.dropped) or "none")


def run_bridge(settings: Settings) -> None:
    """Run the bridge until SIGTERM or SIGINT."""

    async def main() -> None:
        bridge = Bridge(settings)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await bridge.run(stop)

    asyncio.run(main())
