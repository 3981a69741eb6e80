"""Webhooks in, for any channel: authentication over the raw bytes, the channel's parser, and producing
every message of a request to ``bm_in`` (keyed by user) before answering 200 (503 when the broker does
not acknowledge in time, so the channel redelivers).

What is wrong with one message is that message's outcome, never the request's: an item that cannot
be attributed is dropped (logged, counted), content too large for a record is delivered as
``unsupported`` with a too-large error, and the request is still answered 200.
"""

from __future__ import annotations

import asyncio
import logging
import time

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from beacon import otel
from beacon.codec import MessageCodec
from beacon.config import Settings
from beacon.errors import BeaconError, SerializationError
from beacon.gateway.badrequests import expect_handler, install_refused_request_filter
from beacon.gateway.channel import Channel, Dropped, MalformedRequestError, Parsed, RequestRefusedError
from beacon.gateway.metrics import (
    PRODUCE_SECONDS,
    WEBHOOK_DROPPED,
    WEBHOOK_MESSAGES,
    WEBHOOK_TOO_LARGE,
    WEBHOOKS,
)
from beacon.gateway.records import ENCODE_ERRORS, encode_within, is_too_large, shrink
from beacon.kafka import AsyncProducer, Headers, Message
from beacon.messages import BeaconMessage
from beacon.trace import WEBHOOK, add_point, new_span_id, now_ms, record_headers


class Inbound:
    """The HTTP half of a channel's gateway: ``POST <webhook path>``, the channel's own routes, ``/healthz``,
    ``/metrics``. Refuses to exist (``ConfigError``) when ``channel.check_settings()`` refuses, e.g. with no
    secret to authenticate webhooks by."""

    def __init__(self, settings: Settings, producer: AsyncProducer, codec: MessageCodec, channel: Channel) -> None:
        channel.check_settings()
        self.settings = settings
        self.producer = producer
        self.codec = codec
        self.channel = channel
        self.name = channel.name
        self.log = logging.getLogger(f"beacon.gateway.{channel.name}.inbound")
        self.topic = settings.topics.inbound
        self.accepting = True
        install_refused_request_filter()
        # the labelled metrics of every webhook, looked up once (``labels()`` costs more than the increment)
        self._produce_seconds = PRODUCE_SECONDS.labels(channel.name)
        self._accepted = WEBHOOKS.labels(channel.name, "accepted")
        self._messages = WEBHOOK_MESSAGES.labels(channel.name)
        self.app = web.Application(client_max_size=settings.gateway.max_body_bytes)
        webhook = [web.post(channel.webhook_path, self.receive, expect_handler=expect_handler)] \
            if channel.webhook_path else []  # an event-source channel (NostrMQ) takes no webhooks
        self.app.add_routes([
            *channel.routes(),
            *webhook,
            web.get("/healthz", self.healthz),
            web.get("/metrics", self.metrics),
        ])

    def _reject(self, outcome: str, status: int, reason: str) -> web.Response:
        WEBHOOKS.labels(self.name, outcome).inc()
        return web.Response(status=status, text=reason)

    async def receive(self, request: web.Request) -> web.Response:
        """One notification: check, parse, produce all, then 200."""
        started = time.perf_counter()
        received_ms = now_ms()
        if not self.accepting:
            return self._reject("shutting_down", 503, "shutting down")
        if (request.content_length or 0) > self.settings.gateway.max_body_bytes:
            return self._reject("too_large", 413, "body too large")
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return self._reject("too_large", 413, "body too large")
        except (RequestPayloadError, HttpProcessingError) as exc:  # e.g. a Content-Encoding it does not decode
            self.log.warning("webhook rejected: its body could not be read (%s, from %s)", type(exc).__name__,
                             request.remote)
            return self._reject("unreadable", 400, "body could not be read")
        try:
            self.channel.authenticate(request.headers, body)
        except RequestRefusedError as exc:
            self.log.warning("webhook rejected: %s (from %s)", exc, request.remote)
            return self._reject("signature_missing" if exc.status == 401 else "signature_wrong", exc.status, str(exc))
        try:
            parsed = self.channel.parse(body)
        except MalformedRequestError as exc:
            self.log.warning("webhook rejected as malformed: %s; body starts %r", exc, body[:200])
            return self._reject("malformed", 400, str(exc))
        try:
            await self.deliver(parsed, received_ms)
        except (TimeoutError, BeaconError) as exc:
            self.log.error("webhook with %d message(s) answered 503: the broker did not acknowledge within %.1fs (%s). "
                           "%s will redeliver; check `beacon kafka status`.", len(parsed.messages),
                           self.settings.gateway.ack_timeout, str(exc) or type(exc).__name__, self.channel.api_name)
            return self._reject("broker_unavailable", 503, "broker unavailable")
        self._produce_seconds.observe(time.perf_counter() - started)
        self._accepted.inc()
        return web.Response(text="OK")

    async def deliver(self, parsed: Parsed, received_ms: float | None = None) -> None:
        """Produce what one webhook (or an event-source channel's batch) yielded to ``bm_in``, every record
        acknowledged, then the channel's ``after_produce``. Raises TimeoutError or a BeaconError when the broker
        does not acknowledge within BEACON_GATEWAY_ACK_TIMEOUT (nothing is lost: the caller has the input
        redelivered, or delivers again; ids derive from the channel's, so copies are deduplicated).
        ``received_ms`` (epoch ms, default now) is the ``webhook`` hop every record carries (``beacon.trace``)."""
        self._report_dropped(parsed.dropped)
        records = self._encode(parsed.messages)
        messages = [msg for msg, _value in records]
        hops = add_point("", WEBHOOK, received_ms)
        spans = {msg.id: span for msg, _ in records
                 if (span := otel.start(f"{self.name} webhook", msg.trace_id, None, received_ms,
                                        {"beacon.message_id": msg.id})) is not None}
        headers = {msg.id: record_headers(hops, msg.trace_id, spans[msg.id].span_id if spans else new_span_id())
                   for msg, _ in records}
        async with asyncio.timeout(self.settings.gateway.ack_timeout):  # no task of its own, as wait_for makes
            await self._produce(records, headers)
        for span in spans.values():
            span.end()
        self._messages.inc(len(messages))
        await self.channel.after_produce(messages)

    def _report_dropped(self, dropped: list[Dropped]) -> None:
        """One warning per webhook that had items to drop, naming each (bounded)."""
        if not dropped:
            return
        for d in dropped:
            WEBHOOK_DROPPED.labels(self.name, d.what).inc()
        shown = "; ".join(f"{d.what} {d.item_id or '(no id)'} of account {d.account}: {d.reason}" for d in dropped[:5])
        more = f" (and {len(dropped) - 5} more)" if len(dropped) > 5 else ""
        self.log.warning("webhook: %d item(s) dropped, the rest kept: %s%s. They cannot be attributed or parsed; "
                         "nothing is retried (%s is answered 200).", len(dropped), shown, more, self.channel.api_name)

    def _encode(self, messages: list[BeaconMessage]) -> list[tuple[BeaconMessage, bytes]]:
        """Each message encoded within the record limit; one that cannot be encoded at all is dropped."""
        limit = self.settings.gateway.max_record_bytes
        out = []
        for msg in messages:
            try:
                value, kept = encode_within(self.codec, msg, self.topic, limit)
            except (SerializationError, *ENCODE_ERRORS) as exc:
                WEBHOOK_DROPPED.labels(self.name, "unencodable").inc()
                self.log.warning("webhook: message %s (%s, user %s) dropped: it cannot be encoded: %s", msg.id,
                                 msg.kind, msg.user_key, str(exc)[:300])
                continue
            if kept is not msg:
                self._too_large(msg, len(value))
            out.append((kept, value))
        return out

    def _too_large(self, msg: BeaconMessage, size: int) -> None:
        WEBHOOK_TOO_LARGE.labels(self.name).inc()
        self.log.warning("webhook: %s message %s from %s takes %d bytes, too large for a record: delivered as "
                         "'unsupported' with a too-large error, without its content", msg.kind, msg.id, msg.user_key,
                         size)

    async def _produce(self, records: list[tuple[BeaconMessage, bytes]], headers: dict[str, Headers]) -> None:
        """Produce every record and wait for all acks; anything but a size refusal raises (answer 503).

        A record refused as too large (refused for that reason every time) goes without its content:
        at once when the client refuses it, keeping each user's order; when the broker refuses it
        later, it goes again with the records of its user that followed it (same ids: deduplicated
        downstream), so the last copy of each is in order.
        """
        futures = []
        for msg, value in records:
            future = self.producer.produce_nowait(self.topic, value, key=msg.user_key.encode(), headers=headers[msg.id])
            if future.done() and (exc := future.exception()) is not None and is_too_large(exc):
                small, _kept = shrink(self.codec, msg, self.topic, len(value))
                self._too_large(msg, len(value))
                future = self.producer.produce_nowait(self.topic, small, key=msg.user_key.encode(),
                                                      headers=headers[msg.id])
            futures.append(future)
        try:
            results = await asyncio.gather(*futures, return_exceptions=True)
        except asyncio.CancelledError:
            for future in futures:
                future.cancel()
            raise
        again: list[asyncio.Future[Message]] = []
        refused: set[str] = set()
        for (msg, value), result in zip(records, results, strict=True):
            if isinstance(result, BaseException):
                if not is_too_large(result):
                    raise result
                value, _kept = shrink(self.codec, msg, self.topic, len(value))
                self._too_large(msg, len(value))
                refused.add(msg.user_key)
            elif msg.user_key not in refused:
                continue
            again.append(self.producer.produce_nowait(self.topic, value, key=msg.user_key.encode(),
                                                      headers=headers[msg.id]))
        if again:
            await asyncio.gather(*again)

    async def healthz(self, _request: web.Request) -> web.Response:
        return web.json_response({"ok": True, "accepting": self.accepting})

    async def metrics(self, _request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})
