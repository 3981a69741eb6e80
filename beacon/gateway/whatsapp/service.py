"""``beacon gateway whatsapp``: both halves in one process, with a clean SIGTERM.

SIGTERM / SIGINT (see ``beacon.gateway.base``): stop accepting webhooks (503, so Meta redelivers
elsewhere or later), finish in-flight sends, commit, exit.
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from beacon.codec import MessageCodec, retry_registry
from beacon.config import Settings
from beacon.errors import ConfigError, KafkaError
from beacon.gateway.base import run_gateway
from beacon.gateway.whatsapp import CHANNEL
from beacon.gateway.whatsapp.client import CloudApiClient
from beacon.gateway.whatsapp.inbound import Inbound
from beacon.gateway.whatsapp.outbound import Outbound
from beacon.gateway.whatsapp.store import SentStore
from beacon.kafka import AsyncProducer, ensure_topics

log = logging.getLogger("beacon.gateway.whatsapp")


def check_settings(settings: Settings) -> None:
    """Refuse to run without an app secret unless unsigned webhooks are explicitly allowed."""
    if settings.whatsapp_app_secret is None or not settings.whatsapp_app_secret.get_secret_value():
        if not settings.whatsapp_allow_unsigned:
            raise ConfigError("BEACON_WHATSAPP_APP_SECRET is not set: the gateway cannot check webhook signatures "
                              "and refuses to start. Set it to your Meta app secret (or, for local development "
                              "only, set BEACON_WHATSAPP_ALLOW_UNSIGNED=true).")
        log.warning("!" * 78)
        log.warning("UNSIGNED WEBHOOKS ACCEPTED: BEACON_WHATSAPP_ALLOW_UNSIGNED is set and there is no app secret.")
        log.warning("Anyone who can reach this port can inject messages. Development only.")
        log.warning("!" * 78)
    if settings.whatsapp_access_token is None and not settings.whatsapp_access_tokens:
        log.warning("no BEACON_WHATSAPP_ACCESS_TOKEN: outbound sends will pause until one is configured")


class Gateway:
    """The running WhatsApp gateway (a ChannelGateway)."""

    name = CHANNEL

    def __init__(self, settings: Settings) -> None:
        check_settings(settings)
        self.settings = settings
        self.codec = MessageCodec(settings)
        self.producer = AsyncProducer(settings)
        self.store = SentStore(settings.whatsapp_sent_store or settings.data_dir / "gateway-whatsapp-sent.db")
        self.client = CloudApiClient(settings)
        self.inbound = Inbound(settings, self.producer, self.codec)
        self.outbound = Outbound(settings, self.producer, self.codec, self.store, self.client)
        self.stopping = asyncio.Event()

    def stop(self) -> None:
        self.stopping.set()

    async def serve(self) -> None:
        s = self.settings
        try:
            report = await asyncio.to_thread(ensure_topics, s)
            if report.mismatches:
                log.warning("topic settings differ from the configured ones: %s", "; ".join(report.mismatches))
        except KafkaError as exc:
            log.error("%s (webhooks are answered 503 until the broker is back)", exc)
        await retry_registry(self.codec.prepare, [s.topic_in, s.topic_out])
        pruned = self.store.prune(s.topic_retention_ms / 1000)
        if pruned:
            log.info("pruned %d settled ids older than bm_out's retention", pruned)
        runner = web.AppRunner(self.inbound.app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, s.gateway_host, s.gateway_port).start()
        sender = asyncio.create_task(self.outbound.run())
        log.info("WhatsApp gateway: webhooks at http://%s:%d/webhooks/whatsapp, sending %s to %s", s.gateway_host,
                 s.gateway_port, s.topic_out, s.whatsapp_graph_url)
        stopped = asyncio.create_task(self.stopping.wait())
        await asyncio.wait([sender, stopped], return_when=asyncio.FIRST_COMPLETED)
        log.info("stopping: no more webhooks; finishing in-flight sends")
        self.inbound.accepting = False
        self.outbound.stop()
        try:
            await sender
        finally:
            stopped.cancel()
            await runner.cleanup()
            await self.client.close()
            await asyncio.to_thread(self.producer.close)
            self.store.close()
        log.info("WhatsApp gateway stopped")


def run(settings: Settings) -> None:
    """Run the WhatsApp gateway until SIGTERM / SIGINT."""
    run_gateway(Gateway, settings)
