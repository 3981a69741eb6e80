"""``beacon gateway webchat``: the chat page, the visitors' sockets and the sender of this site's replies,
in one process with a clean SIGTERM (stop taking messages, finish deliveries, commit, close the sockets).

Its own service rather than ``beacon.gateway.service``: visitors write over the page's WebSocket, not
webhooks, so the HTTP side is the web chat's app; the sending side is the shared outbound engine.
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from beacon.codec import MessageCodec, retry_registry
from beacon.config import DEV_PLACEHOLDER_SECRETS, Settings
from beacon.errors import ConfigError, KafkaError
from beacon.gateway.base import run_gateway
from beacon.gateway.outbound import Outbound
from beacon.gateway.store import SentStore
from beacon.gateway.webchat import CHANNEL
from beacon.gateway.webchat.app import WebChatApp
from beacon.gateway.webchat.channel import WebChatChannel
from beacon.gateway.webchat.connections import Connections
from beacon.gateway.webchat.history import History
from beacon.gateway.webchat.replies import Replies
from beacon.kafka import AsyncProducer, ensure_topics

log = logging.getLogger("beacon.gateway.webchat")

#: Signs visitor cookies in development when BEACON_WEBCHAT_SECRET is unset (refused in production).
DEV_WEBCHAT_SECRET = "dev-webchat-secret"


def cookie_secret(settings: Settings) -> str:
    """The secret that signs visitor cookies; production refuses to run without a real one."""
    secret = settings.webchat.secret.get_secret_value() if settings.webchat.secret else ""
    if secret and secret not in DEV_PLACEHOLDER_SECRETS | {DEV_WEBCHAT_SECRET}:
        return secret
    if settings.env == "production":
        raise ConfigError("BEACON_WEBCHAT_SECRET is not set (or is a development placeholder): the web chat cannot "
                          "sign visitor cookies and refuses to start. Set it to a long random string, e.g. the "
                          "output of `python -c 'import secrets; print(secrets.token_urlsafe(32))'`.")
    log.warning("BEACON_WEBCHAT_SECRET is not set (or is a placeholder): visitor cookies are signed with the "
                "development secret, so "
                "anyone can forge them. Development only.")
    return DEV_WEBCHAT_SECRET


class Gateway:
    """The running web chat gateway (a ChannelGateway)."""

    name = CHANNEL

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        secret = cookie_secret(settings)
        self.codec = MessageCodec(settings)
        self.producer = AsyncProducer(settings, **{"linger.ms": settings.gateway.linger_ms})
        self.history = History(settings.webchat.history_store or settings.data_dir / "gateway-webchat-history.db")
        self.connections = Connections()
        self.web = WebChatApp(settings, secret, self.producer, self.codec, self.history, self.connections)
        self.channel = WebChatChannel(settings, Replies(settings.webchat.site, self.history, self.connections))
        self.store = SentStore(self.channel.sent_store)
        self.outbound = Outbound(settings, self.producer, self.codec, self.store, self.channel)
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
            log.error("%s (visitors' messages are answered 'unavailable' until the broker is back)", exc)
        await retry_registry(self.codec.prepare, [s.topics.inbound, s.topics.outbound])
        self.store.prune(s.topics.retention_ms / 1000)
        runner = web.AppRunner(self.web.app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, s.webchat.host, s.webchat.port).start()
        sender = asyncio.create_task(self.outbound.run())
        log.info("web chat gateway: the chat page at http://%s:%d/ (site %r), replies from %s", s.webchat.host,
                 s.webchat.port, s.webchat.site, s.topics.outbound)
        stopped = asyncio.create_task(self.stopping.wait())
        await asyncio.wait([sender, stopped], return_when=asyncio.FIRST_COMPLETED)
        log.info("stopping: no more visitor messages; closing the chat sockets")
        self.web.accepting = False
        self.outbound.stop()
        try:
            await sender
        finally:
            stopped.cancel()
            await self.connections.close_all()
            await runner.cleanup()
            await asyncio.to_thread(self.producer.close)
            self.store.close()
            self.history.close()
        log.info("web chat gateway stopped")


def run(settings: Settings) -> None:
    """Run the web chat gateway until SIGTERM / SIGINT."""
    run_gateway(Gateway, settings)
