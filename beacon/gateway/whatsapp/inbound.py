"""Webhooks in: the verification handshake, the signature check over raw bytes, parsing, and
producing every message of a POST to ``bm_in`` before answering 200 (503 when the broker does
not acknowledge in time, so Meta redelivers)."""

from __future__ import annotations

import asyncio
import logging
import time

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from beacon.codec import MessageCodec
from beacon.config import Settings
from beacon.errors import BeaconError, ConfigError
from beacon.gateway.whatsapp import CHANNEL
from beacon.gateway.whatsapp.metrics import PRODUCE_SECONDS, WEBHOOK_MESSAGES, WEBHOOKS
from beacon.gateway.whatsapp.signature import HEADER, SignatureError, check_signature
from beacon.gateway.whatsapp.webhook import MalformedWebhookError, parse_webhook
from beacon.kafka import AsyncProducer

log = logging.getLogger("beacon.gateway.whatsapp.inbound")

WEBHOOK_PATH = "/webhooks/whatsapp"


class Inbound:
    """The HTTP half of the gateway."""

    def __init__(self, settings: Settings, producer: AsyncProducer, codec: MessageCodec) -> None:
        self.settings = settings
        self.producer = producer
        self.codec = codec
        self.topic = settings.topic_in
        self.secret = settings.whatsapp_app_secret.get_secret_value() if settings.whatsapp_app_secret else None
        if not self.secret:
            if not settings.whatsapp_allow_unsigned:
                raise ConfigError("no BEACON_WHATSAPP_APP_SECRET: refusing to accept unsigned webhooks "
                                  "(BEACON_WHATSAPP_ALLOW_UNSIGNED=true allows it, for development only)")
            self.secret = None
        self.verify_token = (settings.whatsapp_verify_token.get_secret_value()
                             if settings.whatsapp_verify_token else None)
        self.accepting = True
        self.app = web.Application(client_max_size=settings.gateway_max_body_bytes)
        self.app.add_routes([
            web.get(WEBHOOK_PATH, self.verify),
            web.post(WEBHOOK_PATH, self.receive),
            web.get("/healthz", self.healthz),
            web.get("/metrics", self.metrics),
        ])

    def _reject(self, outcome: str, status: int, reason: str) -> web.Response:
        WEBHOOKS.labels(CHANNEL, outcome).inc()
        return web.Response(status=status, text=reason)

    async def verify(self, request: web.Request) -> web.Response:
        """Meta's subscription handshake: echo ``hub.challenge`` for the right verify token."""
        q = request.query
        token = q.get("hub.verify_token")
        if q.get("hub.mode") == "subscribe" and self.verify_token and token == self.verify_token:
            return web.Response(text=q.get("hub.challenge", ""))
        log.warning("webhook verification refused (mode %r, token %s)", q.get("hub.mode"),
                    "missing" if not token else "wrong")
        return web.Response(status=403, text="verification failed")

    async def receive(self, request: web.Request) -> web.Response:
        """One notification: check, parse, produce all, then 200."""
        started = time.perf_counter()
        if not self.accepting:
            return self._reject("shutting_down", 503, "shutting down")
        if (request.content_length or 0) > self.settings.gateway_max_body_bytes:
            return self._reject("too_large", 413, "body too large")
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return self._reject("too_large", 413, "body too large")
        if self.secret is not None:
            try:
                check_signature(body, request.headers.get(HEADER), self.secret)
            except SignatureError as exc:
                log.warning("webhook rejected: %s (from %s)", exc, request.remote)
                return self._reject("signature_missing" if exc.status == 401 else "signature_wrong", exc.status,
                                    str(exc))
        try:
            messages = parse_webhook(body)
        except MalformedWebhookError as exc:
            log.warning("webhook rejected as malformed: %s; body starts %r", exc, body[:200])
            return self._reject("malformed", 400, str(exc))
        futures = []
        try:
            for msg in messages:
                value = self.codec.encode(msg, self.topic)
                futures.append(self.producer.produce_nowait(self.topic, value, key=msg.user_key.encode()))
            await asyncio.wait_for(asyncio.gather(*futures), self.settings.gateway_ack_timeout)
        except (TimeoutError, BeaconError) as exc:
            for fut in futures:
                if not fut.done():
                    fut.cancel()
            log.error("webhook with %d message(s) answered 503: the broker did not acknowledge within %.1fs (%s). "
                      "Meta will redeliver; check `beacon kafka status`.", len(messages),
                      self.settings.gateway_ack_timeout, exc or type(exc).__name__)
            return self._reject("broker_unavailable", 503, "broker unavailable")
        PRODUCE_SECONDS.labels(CHANNEL).observe(time.perf_counter() - started)
        WEBHOOKS.labels(CHANNEL, "accepted").inc()
        WEBHOOK_MESSAGES.labels(CHANNEL).inc(len(messages))
        return web.Response(text="OK")

    async def healthz(self, _request: web.Request) -> web.Response:
        return web.json_response({"ok": True, "accepting": self.accepting})

    async def metrics(self, _request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})
