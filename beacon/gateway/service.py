"""``beacon gateway <channel>``: a channel's two halves in one process, with a clean SIGTERM; a channel
that can fetch its users' media also serves it to the API (``beacon.gateway.media``).

SIGTERM / SIGINT (see ``beacon.gateway.base``): stop accepting webhooks (503, so the channel
redelivers elsewhere or later), finish in-flight sends, commit, exit.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from aiohttp import web

from beacon import otel
from beacon.codec import MessageCodec, retry_registry
from beacon.config import Settings
from beacon.errors import KafkaAuthenticationError, KafkaError
from beacon.gateway.base import run_gateway
from beacon.gateway.channel import Channel, EventSource
from beacon.gateway.inbound import Inbound
from beacon.gateway.media import MediaService, MediaSource
from beacon.gateway.outbound import Outbound
from beacon.gateway.store import SentStore
from beacon.kafka import AsyncProducer, ensure_topics


class Gateway:
    """One channel's running gateway (a ChannelGateway): webhooks in, its replies out."""

    def __init__(self, settings: Settings, channel: Channel) -> None:
        self.name = channel.name
        self.channel = channel
        self.log = logging.getLogger(f"beacon.gateway.{channel.name}")
        self.settings = settings
        self.codec = MessageCodec(settings)
        self.producer = AsyncProducer(settings, **{"linger.ms": settings.gateway.linger_ms})
        self.store = SentStore(channel.sent_store)
        self.inbound = Inbound(settings, self.producer, self.codec, channel)
        self.outbound = Outbound(settings, self.producer, self.codec, self.store, channel)
        #: ``GET /media/{account}/{media id}`` for the API, when the channel can fetch its users' media
        self.media = MediaService(settings, channel) if isinstance(channel, MediaSource) else None
        if self.media is not None:
            self.inbound.app.add_routes(self.media.routes())
        self.stopping = asyncio.Event()

    def stop(self) -> None:
        self.stopping.set()

    async def serve(self) -> None:
        s, ch, log = self.settings, self.channel, self.log
        try:
            report = await asyncio.to_thread(ensure_topics, s)
            if report.mismatches:
                log.warning("topic settings differ from the configured ones: %s", "; ".join(report.mismatches))
        except KafkaAuthenticationError:
            raise  # wrong credentials or certificate: waiting cannot help, stop with the reason (logged once)
        except KafkaError as exc:
            log.error("%s (webhooks are answered 503 until the broker is back)", exc)
        await retry_registry(self.codec.prepare, [s.topics.inbound, s.topics.outbound])
        pruned = self.store.prune(s.topics.retention_ms / 1000)
        if pruned:
            log.info("pruned %d settled ids older than bm_out's retention", pruned)
        runner = web.AppRunner(self.inbound.app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, ch.host, ch.port).start()
        sender = asyncio.create_task(self.outbound.run())
        source = asyncio.create_task(ch.listen(self.inbound.deliver, self.stopping)) \
            if isinstance(ch, EventSource) else None
        if source is None:
            log.info("%s gateway: webhooks at http://%s:%d%s, sending its messages of %s through %s", ch.name,
                     ch.host, ch.port, ch.webhook_path, s.topics.outbound, ch.api_name)
        else:
            log.info("%s gateway: listening to %s, health and metrics at http://%s:%d, sending its messages of %s "
                     "through %s", ch.name, ch.api_name, ch.host, ch.port, s.topics.outbound, ch.api_name)
        stopped = asyncio.create_task(self.stopping.wait())
        watched = [sender, stopped] + ([source] if source is not None else [])
        await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
        log.info("stopping: no more webhooks; finishing in-flight sends")
        self.inbound.accepting = False
        self.stopping.set()
        self.outbound.stop()
        try:
            if source is not None:
                await source  # a listener that failed raises here
            await sender
        finally:
            stopped.cancel()
            await runner.cleanup()
            await ch.close()
            await asyncio.to_thread(self.producer.close)
            self.store.close()
        log.info("%s gateway stopped", ch.name)


def run(settings: Settings, make_channel: Callable[[Settings], Channel]) -> None:
    """Run a channel's gateway until SIGTERM / SIGINT."""
    def make(s: Settings) -> Gateway:
        channel = make_channel(s)
        otel.setup(s, f"gateway-{channel.name}")
        return Gateway(s, channel)

    try:
        run_gateway(make, settings)
    finally:
        otel.shutdown()
