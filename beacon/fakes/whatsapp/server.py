"""The fake Cloud API server (aiohttp): send endpoint, read receipts, media, error injection,
a record of everything sent (long-poll ``/_fake/sent``) and ``/_fake/say`` to play a user.

Control endpoints (``/_fake/...``) are not part of the Cloud API:
- ``GET /_fake/sent?after=<seq>&wait=<s>&limit=<n>``: recorded sends with seq > after (waits for one).
- ``POST /_fake/say`` ``{"from", "text", "name"}``: a signed text webhook to the gateway; with
  ``"button": {"id", "title"}`` instead of ``text``, the user taps that reply button.
- ``POST /_fake/event`` ``{"event", "from", "original"?, "text"?, "new_wa_id"?, "response"?}``: a signed
  webhook of a user's event (``payloads.EVENTS``: an edit or revoke of message ``original``, a number
  change, a call permission reply, an interactive Meta sent without its body but with a 131000 error).
- ``POST /_fake/faults`` ``{"code", "to"?, "phone_number_id"?, "count"?}``: answer the next ``count``
  (default: every) matching sends with that error; ``DELETE /_fake/faults`` clears them.
- ``POST /_fake/config`` ``{"access_token"?, "rate_limit"?, "statuses"?, "latency"?}``: rotate the token
  (sends with the old one get 190), answer 130429 above ``rate_limit`` sends/s per number, post status
  webhooks back, answer each send after ``latency`` seconds.
- ``POST /_fake/outage`` ``{"mode", "phone_number_id"?}``: the Cloud API is down (for one number, or all):
  ``503`` answers 503 with no Cloud API body (a load balancer's answer), ``500`` answers Meta's 131000
  "Something went wrong", ``hang`` never answers (the sender times out); ``DELETE /_fake/outage`` ends it.
  Sends refused this way are counted under ``outage`` and never recorded as sent.
- ``GET /_fake/stats``: counts of accepted and rejected sends by code, of media lookups and downloads;
  ``POST /_fake/reset``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import secrets
import time
from collections import Counter, deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import BodyPartReader, web

from beacon.config import Settings
from beacon.fakes.whatsapp import payloads as p
from beacon.fakes.whatsapp.cloudapi import InvalidRequest, error_body, validate_send
from beacon.fakes.whatsapp.driver import WebhookDeliveryError, WebhookDriver
from beacon.trace import HOPS_HEADER, TRACEPARENT

log = logging.getLogger("beacon.fakes.whatsapp")

Json = dict[str, Any]


@dataclass
class Fault:
    """An injected error: ``code`` for sends matching ``to`` / ``phone_number_id``, ``count`` times (None: always)."""

    code: int
    to: str | None = None
    phone_number_id: str | None = None
    count: int | None = None
    details: str | None = None

    def matches(self, phone_number_id: str, to: str | None) -> bool:
        if self.to is not None and (to or "").lstrip("+") != self.to.lstrip("+"):
            return False
        return self.phone_number_id is None or self.phone_number_id == phone_number_id


@dataclass
class FakeState:
    """Everything the fake remembers."""

    access_token: str
    app_secret: str | None
    gateway_url: str
    phone_number_id: str = p.DEFAULT_PHONE_NUMBER_ID
    rate_limit: float | None = None
    statuses: bool = False
    latency: float = 0.0
    sent: list[Json] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    accepted: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    media: dict[str, tuple[bytes, str]] = field(default_factory=dict)
    media_lookups: int = 0  #: ``GET /<version>/<media id>`` asked (a cache in front of the fake asks less)
    media_downloads: int = 0  #: media URLs downloaded
    expire_media_urls: int = 0  #: the next this many downloads answer 404, as Meta does for a URL past its 5 minutes
    recent: dict[str, deque[float]] = field(default_factory=dict)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    outage: Outage | None = None
    outage_over: asyncio.Event = field(default_factory=asyncio.Event)
    hanging: int = 0  #: requests held unanswered by a ``hang`` outage right now
    hanging_peak: int = 0  #: the most held at once (a sender that probes holds one)


OUTAGE_MODES = frozenset({"503", "500", "hang"})


@dataclass(frozen=True)
class Outage:
    """The Cloud API down in ``mode`` (see OUTAGE_MODES) for ``phone_number_id`` (None: every number)."""

    mode: str
    phone_number_id: str | None = None


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")


def _error(code: int, details: str | None = None) -> web.Response:
    status, body = error_body(code, details)
    return _json(body, status)


class FakeCloudApi:
    """The fake's aiohttp application and its state."""

    def __init__(self, *, access_token: str, app_secret: str | None, gateway_url: str,
                 phone_number_id: str = p.DEFAULT_PHONE_NUMBER_ID) -> None:
        self.state = FakeState(access_token=access_token, app_secret=app_secret, gateway_url=gateway_url,
                               phone_number_id=phone_number_id)
        self._driver: WebhookDriver | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self.app = web.Application(client_max_size=100 * 1024 * 1024)
        self.app.add_routes([
            web.post("/{version}/{phone_number_id}/messages", self.send),
            web.post("/{version}/{phone_number_id}/media", self.upload_media),
            web.get("/_fake/sent", self.list_sent),
            web.post("/_fake/say", self.say),
            web.post("/_fake/event", self.event),
            web.post("/_fake/faults", self.add_fault),
            web.delete("/_fake/faults", self.clear_faults),
            web.post("/_fake/config", self.configure),
            web.post("/_fake/outage", self.start_outage),
            web.delete("/_fake/outage", self.end_outage),
            web.get("/_fake/stats", self.stats),
            web.post("/_fake/reset", self.reset),
            web.get("/_fake/media/{media_id}", self.download_media),
            web.get("/healthz", self.healthz),
            web.get("/{version}/{media_id}", self.media_url),
        ])
        self.app.on_cleanup.append(self._cleanup)

    def add_media(self, content: bytes, mime_type: str) -> str:
        """Store a file as if a user had sent it (Meta holds it); returns its media id."""
        media_id = str(secrets.randbelow(10**15) + 10**15)
        self.state.media[media_id] = (content, mime_type)
        return media_id

    @property
    def driver(self) -> WebhookDriver:
        if self._driver is None:
            self._driver = WebhookDriver(self.state.gateway_url, self.state.app_secret, self.state.phone_number_id)
        return self._driver

    async def _cleanup(self, _app: web.Application) -> None:
        self.state.outage_over.set()
        for task in list(self._tasks):
            task.cancel()
        if self._driver is not None:
            await self._driver.aclose()

    def _authorised(self, request: web.Request) -> bool:
        return request.headers.get("Authorization", "") == f"Bearer {self.state.access_token}"

    def _reject(self, code: int, details: str | None = None) -> web.Response:
        self.state.rejected[str(code)] += 1
        return _error(code, details)

    # --- the Cloud API ------------------------------------------------------------------------

    async def send(self, request: web.Request) -> web.Response:
        received_at = time.time()
        if self.state.latency:
            await asyncio.sleep(self.state.latency)
        phone_number_id = request.match_info["phone_number_id"]
        outage = self.state.outage
        if outage is not None and outage.phone_number_id in (None, phone_number_id):
            return await self._down(outage, request)
        if not self._authorised(request):
            return self._reject(190, "Invalid OAuth access token")
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            return self._reject(100, "The request body is not JSON")
        try:
            validate_send(body)
        except InvalidRequest as exc:
            return self._reject(exc.code, exc.details)
        to = body.get("to")
        fault = self._fault_for(phone_number_id, to)
        if fault is not None:
            return self._reject(fault.code, fault.details)
        if self._over_rate(phone_number_id, received_at):
            return self._reject(130429, "Message throughput exceeded")
        state = self.state
        state.accepted += 1
        # The trace headers Beacon sends along (``beacon.trace``): the bench reads each message's hops from here.
        state.sent.append({"seq": len(state.sent) + 1, "received_at": received_at,
                           "phone_number_id": phone_number_id, "to": to, "body": body,
                           "traceparent": request.headers.get(TRACEPARENT),
                           "hops": request.headers.get(HOPS_HEADER)})
        state.changed.set()
        state.changed = asyncio.Event()
        if body.get("status") == "read":
            return _json({"success": True})
        wamid = p.new_wamid()
        if state.statuses:
            self._spawn(self._post_statuses(phone_number_id, wamid, str(to).lstrip("+"),
                                            body.get("biz_opaque_callback_data")))
        message: Json = {"id": wamid}
        if body.get("type") == "template":
            message["message_status"] = "accepted"
        return _json({"messaging_product": "whatsapp",
                      "contacts": [{"input": to, "wa_id": str(to).lstrip("+")}], "messages": [message]})

    async def _down(self, outage: Outage, request: web.Request) -> web.Response:
        self.state.rejected["outage"] += 1
        if outage.mode == "hang":
            state = self.state
            state.hanging += 1
            state.hanging_peak = max(state.hanging_peak, state.hanging)
            try:  # hold the request until the outage ends or the sender gives up on it
                while not state.outage_over.is_set() and request.transport and not request.transport.is_closing():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(state.outage_over.wait(), 0.05)
            finally:
                state.hanging -= 1
        if outage.mode == "500":
            return _error(131000)
        return web.Response(status=503, text="Service Unavailable")

    def _fault_for(self, phone_number_id: str, to: str | None) -> Fault | None:
        for fault in self.state.faults:
            if fault.matches(phone_number_id, to):
                if fault.count is not None:
                    fault.count -= 1
                    if fault.count <= 0:
                        self.state.faults.remove(fault)
                return fault
        return None

    def _over_rate(self, phone_number_id: str, now: float) -> bool:
        limit = self.state.rate_limit
        if not limit:
            return False
        window = self.state.recent.setdefault(phone_number_id, deque())
        while window and window[0] <= now - 1.0:
            window.popleft()
        if len(window) >= limit:
            return True
        window.append(now)
        return False

    async def upload_media(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return self._reject(190)
        reader = await request.multipart()
        data, mime = b"", "application/octet-stream"
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader):
                continue
            if part.name == "file":
                data = await part.read()
                mime = part.headers.get("Content-Type", mime)
            elif part.name == "type":
                mime = await part.text()
        return _json({"id": self.add_media(data, mime)})

    async def media_url(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return self._reject(190)
        media_id = request.match_info["media_id"]
        self.state.media_lookups += 1
        if media_id not in self.state.media:
            return self._reject(100, f"media {media_id} does not exist")
        data, mime = self.state.media[media_id]
        return _json({"messaging_product": "whatsapp", "url": f"{request.url.origin()}/_fake/media/{media_id}",
                      "mime_type": mime, "sha256": hashlib.sha256(data).hexdigest(), "file_size": len(data),
                      "id": media_id})

    async def download_media(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return web.Response(status=401)
        self.state.media_downloads += 1
        if self.state.expire_media_urls > 0:
            self.state.expire_media_urls -= 1
            return web.Response(status=404)
        item = self.state.media.get(request.match_info["media_id"])
        if item is None:
            return web.Response(status=404)
        return web.Response(body=item[0], content_type=item[1].split(";")[0])

    # --- Meta's side of webhooks --------------------------------------------------------------

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _post_statuses(self, phone_number_id: str, wamid: str, to: str, opaque: str | None) -> None:
        for state in ("sent", "delivered", "read"):
            payload = p.status_webhook(wamid, state, to, phone_number_id=phone_number_id, opaque=opaque)
            try:
                await self.driver.post(payload)
            except WebhookDeliveryError as exc:
                log.warning("fake Cloud API: status webhook %s of %s not accepted: %s", state, wamid, exc)
                return

    async def say(self, request: web.Request) -> web.Response:
        data = orjson.loads(await request.read())
        from_, text, button = data.get("from"), data.get("text"), data.get("button")
        pressed = isinstance(button, dict) and isinstance(button.get("id"), str)
        if not from_ or not (isinstance(text, str) or pressed):
            return _json({"error": "from and text (or button: {id, title}) are required"}, 400)
        wamid = p.new_wamid()
        number = str(data.get("phone_number_id") or self.state.phone_number_id)
        if pressed:
            payload = p.button_webhook(str(from_), button["id"], str(button.get("title") or button["id"]),
                                       name=data.get("name"), phone_number_id=number, wamid=wamid)
        else:
            payload = p.text_webhook(str(from_), text, name=data.get("name"), phone_number_id=number, wamid=wamid)
        try:
            status = await self.driver.post(payload)
        except WebhookDeliveryError as exc:
            return _json({"wamid": wamid, "gateway_status": exc.status, "error": str(exc)}, 502)
        return _json({"wamid": wamid, "gateway_status": status})

    async def event(self, request: web.Request) -> web.Response:
        """Play a user's event: ``{"event": one of payloads.EVENTS, "from": ..., "original": wamid,
        "text": ..., "new_wa_id": ..., "response": "accept"}``; answers its wamid and the gateway's status."""
        data = orjson.loads(await request.read())
        from_, event = data.get("from"), data.get("event")
        if not from_ or event not in p.EVENTS:
            return _json({"error": f"from and event ({', '.join(p.EVENTS)}) are required"}, 400)
        wamid = p.new_wamid()
        payload = p.event_webhook(
            str(event), str(from_), original=data.get("original"), text=data.get("text"),
            new_wa_id=data.get("new_wa_id"), response=str(data.get("response") or "accept"), wamid=wamid,
            phone_number_id=str(data.get("phone_number_id") or self.state.phone_number_id),
        )
        try:
            status = await self.driver.post(payload)
        except WebhookDeliveryError as exc:
            return _json({"wamid": wamid, "gateway_status": exc.status, "error": str(exc)}, 502)
        return _json({"wamid": wamid, "gateway_status": status})

    # --- control ------------------------------------------------------------------------------

    async def list_sent(self, request: web.Request) -> web.Response:
        after = int(request.query.get("after", "0"))
        wait = float(request.query.get("wait", "0"))
        limit = int(request.query.get("limit", "10000"))
        deadline = time.monotonic() + wait
        while len(self.state.sent) <= after:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                await asyncio.wait_for(self.state.changed.wait(), remaining)
            except TimeoutError:
                break
        return _json(self.state.sent[max(after, 0):max(after, 0) + limit])

    async def add_fault(self, request: web.Request) -> web.Response:
        data = orjson.loads(await request.read())
        fault = Fault(code=int(data["code"]), to=data.get("to"), phone_number_id=data.get("phone_number_id"),
                      count=data.get("count"), details=data.get("details"))
        self.state.faults.append(fault)
        return _json({"faults": len(self.state.faults)})

    async def clear_faults(self, _request: web.Request) -> web.Response:
        self.state.faults.clear()
        return _json({"faults": 0})

    async def configure(self, request: web.Request) -> web.Response:
        data = orjson.loads(await request.read())
        if "access_token" in data:
            self.state.access_token = str(data["access_token"])
        if "rate_limit" in data:
            self.state.rate_limit = float(data["rate_limit"]) if data["rate_limit"] else None
        if "latency" in data:
            self.state.latency = float(data["latency"] or 0)
        if "statuses" in data:
            self.state.statuses = bool(data["statuses"])
        return _json({"ok": True})

    async def start_outage(self, request: web.Request) -> web.Response:
        data = orjson.loads(await request.read())
        mode = str(data.get("mode"))
        if mode not in OUTAGE_MODES:
            return _json({"error": f"mode must be one of {sorted(OUTAGE_MODES)}"}, 400)
        self.state.outage = Outage(mode, data.get("phone_number_id"))
        self.state.outage_over = asyncio.Event()
        return _json({"outage": mode})

    async def end_outage(self, _request: web.Request) -> web.Response:
        self.restore()
        return _json({"outage": None})

    def restore(self) -> None:
        """End the outage: answer again, and let hung requests finish."""
        self.state.outage = None
        self.state.outage_over.set()

    async def stats(self, _request: web.Request) -> web.Response:
        return _json({"accepted": self.state.accepted, "rejected": dict(self.state.rejected),
                      "hanging": self.state.hanging, "hanging_peak": self.state.hanging_peak,
                      "last_seq": len(self.state.sent), "faults": len(self.state.faults),
                      "media_lookups": self.state.media_lookups, "media_downloads": self.state.media_downloads})

    async def reset(self, _request: web.Request) -> web.Response:
        s = self.state
        s.sent.clear()
        s.faults.clear()
        s.accepted = 0
        s.rejected.clear()
        s.recent.clear()
        s.rate_limit = None
        return _json({"ok": True})

    async def healthz(self, _request: web.Request) -> web.Response:
        return _json({"ok": True})


def gateway_url(settings: Settings) -> str:
    """Where the fake posts webhooks: BEACON_GATEWAY_URL or the local gateway's port."""
    return settings.gateway.url or f"http://127.0.0.1:{settings.whatsapp.gateway_port}"


def from_settings(settings: Settings) -> FakeCloudApi:
    """A fake that accepts the gateway's access token and signs with its app secret."""
    token = settings.whatsapp.access_token.get_secret_value() if settings.whatsapp.access_token else "dev-access-token"
    secret = settings.whatsapp.app_secret.get_secret_value() if settings.whatsapp.app_secret else None
    return FakeCloudApi(access_token=token, app_secret=secret, gateway_url=gateway_url(settings),
                        phone_number_id=settings.whatsapp.phone_number_id)


@asynccontextmanager
async def running(fake: FakeCloudApi, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[str]:
    """Serve ``fake`` on host:port (0: a free port) and yield its base URL."""
    runner = web.AppRunner(fake.app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = runner.addresses[0][1]
    try:
        yield f"http://{host}:{bound}"
    finally:
        await runner.cleanup()
