"""The web chat's HTTP side: the page (``/`` and ``/static/``), ``/healthz``, ``/metrics`` and the
visitor's WebSocket (``/ws``).

A visitor's message is acknowledged to the page (echoed with its place in the history) only after the
broker acknowledged it on ``bm_in``; when the broker does not answer in BEACON_GATEWAY_ACK_TIMEOUT the
page is told ``unavailable`` and sends it again (same id: deduplicated). Origins are checked at the
handshake (403), each message is bounded in size and each visitor in rate, with an error the page shows.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from aiohttp import WSMsgType, web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from beacon.codec import MessageCodec
from beacon.config import Settings
from beacon.errors import BeaconError
from beacon.gateway.badrequests import install_refused_request_filter
from beacon.gateway.limiter import TokenBucket
from beacon.gateway.webchat.connections import Connections
from beacon.gateway.webchat.frames import BadFrameError, error_frame, inbound_message, message_frame, parse_frame
from beacon.gateway.webchat.history import History
from beacon.gateway.webchat.identity import COOKIE_MAX_AGE, COOKIE_NAME, VisitorCookies
from beacon.gateway.webchat.metrics import REFUSED_SOCKETS, VISITOR_MESSAGES
from beacon.kafka import AsyncProducer

log = logging.getLogger("beacon.gateway.webchat")

STATIC = Path(__file__).parent / "static"
#: The page loads only its own script and style; images in replies may come from anywhere on https.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' https: data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
#: Visitors' rate buckets kept before the full (idle) ones are forgotten.
MAX_BUCKETS = 10_000


class WebChatApp:
    """Serves the page and the visitors' sockets; produces what they type to ``bm_in``."""

    def __init__(self, settings: Settings, secret: str, producer: AsyncProducer, codec: MessageCodec,
                 history: History, connections: Connections) -> None:
        self.settings = settings
        self.site = settings.webchat.site
        self.cookies = VisitorCookies(secret, self.site)
        self.producer = producer
        self.codec = codec
        self.history = history
        self.connections = connections
        self.accepting = True
        self._buckets: dict[str, TokenBucket] = {}
        self._broker_down = False
        install_refused_request_filter()
        self.app = web.Application()
        self.app.add_routes([
            web.get("/", self.page),
            web.get("/static/{name}", self.static),
            web.get("/ws", self.websocket),
            web.get("/healthz", self.healthz),
            web.get("/metrics", self.metrics),
        ])

    # --- the page ------------------------------------------------------------------------------

    async def page(self, request: web.Request) -> web.Response:
        """The chat page; a visitor without a valid cookie gets a new visitor id."""
        response = web.FileResponse(STATIC / "index.html", headers=SECURITY_HEADERS)
        if self.cookies.visitor(request.cookies.get(COOKIE_NAME)) is None:
            _visitor, value = self.cookies.issue()
            response.set_cookie(COOKIE_NAME, value, max_age=COOKIE_MAX_AGE, path="/", httponly=True,
                                samesite="Lax", secure=request.secure)
        return response  # type: ignore[return-value]

    async def static(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if name not in {"chat.js", "chat.css", "beacon.svg"}:
            raise web.HTTPNotFound()
        return web.FileResponse(STATIC / name, headers=SECURITY_HEADERS)

    async def healthz(self, _request: web.Request) -> web.Response:
        return web.json_response({"ok": True, "accepting": self.accepting, "connections": len(self.connections)})

    async def metrics(self, _request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    # --- the socket ----------------------------------------------------------------------------

    def _origin_allowed(self, origin: str | None, request: web.Request) -> bool:
        if not origin:
            return False
        allowed = self.settings.webchat.allowed_origins
        if allowed:
            return origin.rstrip("/") in {o.rstrip("/") for o in allowed}
        return urlsplit(origin).netloc == request.host

    async def websocket(self, request: web.Request) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        if not self._origin_allowed(origin, request):
            REFUSED_SOCKETS.labels("origin").inc()
            log.warning("chat socket refused (403): origin %r is not allowed (from %s); allowed origins are "
                        "BEACON_WEBCHAT_ALLOWED_ORIGINS, or the page's own when empty", (origin or "")[:100],
                        request.remote)
            return web.Response(status=403, text="origin not allowed")
        visitor = self.cookies.visitor(request.cookies.get(COOKIE_NAME))
        if visitor is None:
            REFUSED_SOCKETS.labels("cookie").inc()
            return web.Response(status=401, text="no valid visitor cookie: load the chat page first")
        if not self.accepting:
            return web.Response(status=503, text="shutting down")
        # JSON may escape a character to 6 bytes; a bigger frame closes the socket (1009).
        ws = web.WebSocketResponse(heartbeat=20, max_msg_size=self.settings.webchat.max_message_chars * 6 + 4096)
        await ws.prepare(request)
        self.connections.add(visitor, ws)
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    await self._on_frame(visitor, ws, msg.data)
                elif msg.type == WSMsgType.ERROR:
                    break
        finally:
            self.connections.remove(visitor, ws)
        return ws

    async def _on_frame(self, visitor: str, ws: web.WebSocketResponse, data: str) -> None:
        try:
            frame = parse_frame(data)
            kind = frame.get("type")
            if kind == "hello":
                after = frame.get("after", 0)
                if not isinstance(after, int) or isinstance(after, bool) or after < 0:
                    raise BadFrameError("bad_request", "after must be a non-negative integer")
                for item in self.history.after(self.site, visitor, after):
                    await ws.send_json(item)
            elif kind == "send":
                await self._send(visitor, ws, frame)
            else:
                raise BadFrameError("bad_request", f"unknown frame type {str(kind)[:40]!r}")
        except BadFrameError as exc:
            VISITOR_MESSAGES.labels(exc.code).inc()
            await ws.send_json(error_frame(exc.code, str(exc), exc.client_id))

    def _bucket(self, visitor: str) -> TokenBucket:
        bucket = self._buckets.get(visitor)
        if bucket is None:
            if len(self._buckets) >= MAX_BUCKETS:
                self._buckets = {v: b for v, b in self._buckets.items() if not b.full}
            s = self.settings
            bucket = self._buckets[visitor] = TokenBucket(s.webchat.visitor_rate, s.webchat.visitor_burst)
        return bucket

    async def _send(self, visitor: str, ws: web.WebSocketResponse, frame: dict[str, Any]) -> None:
        """Produce one visitor message to bm_in; echo it to the visitor's sockets once the broker acknowledged."""
        msg = inbound_message(frame, site=self.site, visitor=visitor,
                              max_chars=self.settings.webchat.max_message_chars)
        known = self.history.frame(msg.id)
        if known is not None:  # a resend of a message the broker already has: acknowledge it again
            VISITOR_MESSAGES.labels("duplicate").inc()
            await ws.send_json(known)
            return
        if not self.accepting:
            raise BadFrameError("unavailable", "The chat is restarting: your message will be sent again.",
                                msg.channel_message_id)
        bucket = self._bucket(visitor)
        wait = bucket.reserve()
        if wait > 0:
            bucket.tokens += 1  # a refused message spends nothing
            raise BadFrameError("rate_limited", f"You are sending messages too fast: wait {wait:.0f} s and send "
                                f"again.", msg.channel_message_id)
        try:
            value = self.codec.encode(msg, self.settings.topics.inbound)
            await asyncio.wait_for(self.producer.produce(self.settings.topics.inbound, value,
                                                         key=msg.user_key.encode()),
                                   self.settings.gateway.ack_timeout)
        except (TimeoutError, BeaconError) as exc:
            if not self._broker_down:
                self._broker_down = True
                log.error("chat messages are not acknowledged by the broker within %.1fs (%s; first: message %s of "
                          "visitor %s); the pages resend them. Check `beacon kafka status` and the registry.",
                          self.settings.gateway.ack_timeout, str(exc)[:200] or type(exc).__name__, msg.id, visitor)
            raise BadFrameError("unavailable", "The chat service is busy: your message will be sent again in a "
                                "moment.", msg.channel_message_id) from exc
        if self._broker_down:
            self._broker_down = False
            log.info("chat messages are acknowledged by the broker again")
        VISITOR_MESSAGES.labels("accepted").inc()
        echo = message_frame(msg, "user")
        seq = self.history.add(self.site, visitor, msg.id, echo)
        if seq is not None:
            await self.connections.push(visitor, {**echo, "seq": seq})
