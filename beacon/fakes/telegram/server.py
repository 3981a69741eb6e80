"""The fake Bot API server (aiohttp): the methods a bot uses, files, errors on demand, a log of
every call (long-poll ``/_fake/calls``) and Updates delivered to the webhook like Telegram does.

Bot API routes: ``/bot<token>/<method>`` (JSON, form or query parameters, as Telegram accepts) for
getMe, setWebhook, deleteWebhook, getWebhookInfo, sendMessage, sendPhoto, sendDocument, sendVoice,
sendAudio, sendVideo, sendSticker, sendLocation, sendContact, sendChatAction, setMessageReaction,
answerCallbackQuery, getFile; ``/file/bot<token>/<file_path>`` downloads a file. A wrong token gets
401 ``Unauthorized``; an unknown method 404 ``Not Found``.

Control endpoints (not Telegram's):
- ``GET /_fake/calls?after=<seq>&wait=<s>&method=<m>``: calls with seq > after (waits for one); each with the
  ``traceparent`` and ``beacon-hops`` headers the gateway sent (``hops``), as the fake Cloud API records them.
- ``POST /_fake/fail`` ``{"error": 429|403|500|502, "chat_id"?, "count"?, "retry_after"?}``: answer the next
  ``count`` (default: every) calls naming that chat (or, without chat_id, every call) with that error;
  ``DELETE /_fake/fail`` clears them.
- ``POST /_fake/say`` ``{"chat_id", "text"?, "name"?, "button"?}``: the user writes ``text`` (or taps the
  inline button whose callback_data is ``button`` under the bot's last message to them); the Update goes to
  the webhook and the answer comes back as ``{"update_id", "status"}``.
- ``POST /_fake/updates``: deliver any Update (``update_id`` added when absent).
- ``POST /_fake/files`` (raw body, ``?name=``): store a file; answers ``{"file_id", "file_path"}``.
- ``GET /_fake/deliveries``: every webhook POST attempt (update_id, status).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import orjson
from aiohttp import web

from beacon.config import Settings
from beacon.fakes.telegram import updates as u
from beacon.fakes.telegram.botapi import CHAT_METHODS, SEND_METHODS, BadRequest, chat_id_of, error, ok, validate
from beacon.fakes.telegram.delivery import UpdateDelivery, Webhook
from beacon.gateway.telegram import bot_id_of
from beacon.trace import HOPS_HEADER, TRACEPARENT

Json = dict[str, Any]

FAULTS = {403: "Forbidden: bot was blocked by the user", 500: "Internal Server Error", 502: "Bad Gateway"}


@dataclass
class Fault:
    """An injected error for calls naming ``chat_id`` (None: every call), ``count`` times (None: until cleared)."""

    error: int
    chat_id: int | None = None
    count: int | None = None
    retry_after: int = 5


@dataclass
class FakeState:
    token: str
    bot_id: str
    webhook: Webhook
    calls: list[Json] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    next_message_id: defaultdict[int, int] = field(default_factory=lambda: defaultdict(int))
    last_bot_message: dict[int, Json] = field(default_factory=dict)
    callback_queries: set[str] = field(default_factory=set)
    files: dict[str, tuple[str, bytes]] = field(default_factory=dict)
    next_update_id: int = 100000
    changed: asyncio.Event = field(default_factory=asyncio.Event)


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")


class FakeBotApi:
    """The fake's aiohttp application and its state. ``default_webhook`` is used until setWebhook is called."""

    def __init__(self, *, token: str, default_webhook: str = "", default_secret: str | None = None,
                 retry_delay: float = 0.2, max_attempts: int = 8) -> None:
        webhook = Webhook(url=default_webhook, secret_token=default_secret)
        #: getFile omits ``file_size`` (Telegram may), so a client must bound the download itself
        self.hide_file_sizes = False
        self.state = FakeState(token=token, bot_id=bot_id_of(token), webhook=webhook)
        self.delivery = UpdateDelivery(webhook, retry_delay=retry_delay, max_attempts=max_attempts)
        self.app = web.Application(client_max_size=60 * 1024 * 1024)
        self.app.add_routes([
            web.route("*", "/bot{token}/{method}", self.method),
            web.get("/file/bot{token}/{path:.+}", self.download),
            web.get("/_fake/calls", self.list_calls),
            web.post("/_fake/fail", self.add_fault),
            web.delete("/_fake/fail", self.clear_faults),
            web.post("/_fake/say", self.say),
            web.post("/_fake/updates", self.post_update),
            web.post("/_fake/files", self.add_file_route),
            web.get("/_fake/deliveries", self.deliveries),
            web.get("/healthz", self.healthz),
        ])
        self.app.on_cleanup.append(self._cleanup)

    async def _cleanup(self, _app: web.Application) -> None:
        await self.delivery.close()

    # --- helpers for tests and the control endpoints -------------------------------------

    def add_file(self, content: bytes, name: str = "file.bin") -> str:
        """Store a file as if a user had sent it; returns its file_id."""
        file_id = "BQAC" + secrets.token_urlsafe(24)
        self.state.files[file_id] = (f"documents/{file_id[:12]}_{name}", content)
        return file_id

    def new_update_id(self) -> int:
        self.state.next_update_id += 1
        return self.state.next_update_id

    def new_message_id(self, chat_id: int) -> int:
        self.state.next_message_id[chat_id] += 1
        return self.state.next_message_id[chat_id]

    def calls(self, method: str | None = None) -> list[Json]:
        return [c for c in self.state.calls if method is None or c["method"] == method]

    # --- Bot API ------------------------------------------------------------------------------

    async def _params(self, request: web.Request) -> Json:
        params: Json = dict(request.query)
        if request.can_read_body:
            raw = await request.read()
            ctype = request.content_type
            if ctype == "application/json" and raw:
                body = orjson.loads(raw)
                if not isinstance(body, dict):
                    raise BadRequest("parameters must be a JSON object")
                params.update(body)
            elif ctype == "application/x-www-form-urlencoded":
                params.update(dict(parse_qsl(raw.decode())))
        for key in ("reply_markup", "reply_parameters", "allowed_updates", "reaction"):
            if isinstance(params.get(key), str):  # form and query parameters carry objects as JSON text
                with contextlib.suppress(orjson.JSONDecodeError):
                    params[key] = orjson.loads(params[key])
        return params

    async def method(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.state.token:
            return _json(error(401, "Unauthorized"), 401)
        name = request.match_info["method"]
        handler = self._handlers().get(name)
        if handler is None:
            return _json(error(404, "Not Found"), 404)
        try:
            params = await self._params(request)
            chat = chat_id_of(params) if name in CHAT_METHODS else None
            fault = self._fault(chat)
            if fault is not None:
                self._record(name, params, chat, fault.status)
                return fault
            validate(name, params)
            result = handler(params)
        except BadRequest as exc:
            self._record(name, {}, None, 400)
            return _json(error(400, f"Bad Request: {exc}"), 400)
        except orjson.JSONDecodeError:
            return _json(error(400, "Bad Request: can't parse JSON"), 400)
        self._record(name, params, chat, 200, result, trace=(request.headers.get(TRACEPARENT),
                                                             request.headers.get(HOPS_HEADER)))
        return _json(ok(result))

    def _fault(self, chat: int | None) -> web.Response | None:
        for fault in self.state.faults:
            if fault.chat_id is not None and fault.chat_id != chat:
                continue
            if fault.count is not None:
                fault.count -= 1
                if fault.count <= 0:
                    self.state.faults.remove(fault)
            if fault.error == 429:
                return _json(error(429, f"Too Many Requests: retry after {fault.retry_after}",
                                   retry_after=fault.retry_after), 429)
            if fault.error == 502:
                return web.Response(status=502, text="<html><body>502 Bad Gateway</body></html>",
                                    content_type="text/html")
            return _json(error(fault.error, FAULTS.get(fault.error, "Error")), fault.error)
        return None

    def _record(self, method: str, params: Json, chat: int | None, status: int, result: Any = None,
                trace: tuple[str | None, str | None] = (None, None)) -> None:
        self.state.calls.append({"seq": len(self.state.calls) + 1, "method": method, "params": params,
                                 "chat_id": chat, "status": status, "result": result, "at": time.time(),
                                 "traceparent": trace[0], "hops": trace[1]})
        self.state.changed.set()
        self.state.changed = asyncio.Event()

    def _handlers(self) -> dict[str, Any]:
        handlers: dict[str, Any] = {m: self._send for m in SEND_METHODS}
        handlers.update({
            "getMe": self._get_me, "setWebhook": self._set_webhook, "deleteWebhook": self._delete_webhook,
            "getWebhookInfo": self._webhook_info, "sendChatAction": lambda p: True,
            "setMessageReaction": lambda p: True, "answerCallbackQuery": self._answer_callback,
            "getFile": self._get_file,
        })
        return handlers

    def _get_me(self, _params: Json) -> Json:
        return {"id": int(self.state.bot_id), "is_bot": True, "first_name": "Beacon (fake)",
                "username": "beacon_fake_bot", "can_join_groups": True, "can_read_all_group_messages": False,
                "supports_inline_queries": False}

    def _set_webhook(self, params: Json) -> bool:
        hook = self.state.webhook
        url = str(params.get("url") or "")
        secret = params.get("secret_token")
        if secret is not None and not (1 <= len(str(secret)) <= 256 and all(
                c.isascii() and (c.isalnum() or c in "_-") for c in str(secret))):
            raise BadRequest("secret token contains unallowed characters")
        hook.url, hook.secret_token = url, (str(secret) if secret else None)
        allowed = params.get("allowed_updates")
        if isinstance(allowed, list):
            hook.allowed_updates = [str(a) for a in allowed]
        return True

    def _delete_webhook(self, _params: Json) -> bool:
        self.state.webhook.url = ""
        return True

    def _webhook_info(self, _params: Json) -> Json:
        hook = self.state.webhook
        info: Json = {"url": hook.url, "has_custom_certificate": False,
                      "pending_update_count": self.delivery.pending if hook.url else 0, "max_connections": 40}
        if hook.allowed_updates:
            info["allowed_updates"] = hook.allowed_updates
        if hook.last_error_date is not None:
            info["last_error_date"] = hook.last_error_date
            info["last_error_message"] = hook.last_error_message
        return info

    def _send(self, params: Json) -> Json:
        chat = chat_id_of(params)
        message = u.message(chat, self.new_message_id(chat)) | {"from": self._bot_user()}
        for key in ("text", "caption", "reply_markup"):
            if key in params:
                message[key] = params[key]
        for key in ("photo", "document", "voice", "audio", "video", "sticker"):
            if key in params:
                media: Json = {"file_id": str(params[key]), "file_unique_id": secrets.token_hex(8)}
                message[key] = [media] if key == "photo" else media
        if "latitude" in params:
            message["location"] = {"latitude": float(params["latitude"]), "longitude": float(params["longitude"])}
        if "phone_number" in params:
            message["contact"] = {"phone_number": params["phone_number"], "first_name": params["first_name"]}
        self.state.last_bot_message[chat] = message
        return message

    def _bot_user(self) -> Json:
        return {"id": int(self.state.bot_id), "is_bot": True, "first_name": "Beacon (fake)",
                "username": "beacon_fake_bot"}

    def _answer_callback(self, params: Json) -> bool:
        if str(params.get("callback_query_id")) not in self.state.callback_queries:
            raise BadRequest("query is too old and response timeout expired or query ID is invalid")
        return True

    def _get_file(self, params: Json) -> Json:
        file_id = str(params.get("file_id") or "")
        if file_id not in self.state.files:
            raise BadRequest("invalid file_id")
        path, content = self.state.files[file_id]
        info: Json = {"file_id": file_id, "file_unique_id": file_id[-8:], "file_path": path}
        if not self.hide_file_sizes:
            info["file_size"] = len(content)
        return info

    async def download(self, request: web.Request) -> web.StreamResponse:
        if request.match_info["token"] != self.state.token:
            return _json(error(401, "Unauthorized"), 401)
        path = request.match_info["path"]
        for stored_path, content in self.state.files.values():
            if stored_path == path:
                return web.Response(body=content, content_type="application/octet-stream")
        return _json(error(404, "Not Found"), 404)

    # --- control ----------------------------------------------------------------------------

    async def list_calls(self, request: web.Request) -> web.Response:
        after = int(request.query.get("after", "0"))
        wait = min(float(request.query.get("wait", "0")), 30.0)
        only = request.query.get("method")
        deadline = time.monotonic() + wait

        def found() -> list[Json]:
            return [c for c in self.state.calls[after:] if only is None or c["method"] == only]

        while not found() and (remaining := deadline - time.monotonic()) > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.state.changed.wait(), remaining)
        return _json(found())

    async def add_fault(self, request: web.Request) -> web.Response:
        body = await request.json()
        fault = Fault(error=int(body["error"]), chat_id=int(body["chat_id"]) if body.get("chat_id") is not None
                      else None, count=body.get("count"), retry_after=int(body.get("retry_after", 5)))
        self.state.faults.append(fault)
        return _json({"faults": len(self.state.faults)})

    async def clear_faults(self, _request: web.Request) -> web.Response:
        self.state.faults.clear()
        return _json({"faults": 0})

    async def say(self, request: web.Request) -> web.Response:
        body = await request.json()
        if not self.state.webhook.url:
            return _json({"error": "no webhook is set: run `beacon telegram set-webhook URL` (or deleteWebhook "
                                   "was called)"}, 409)
        chat = int(body["chat_id"])
        name = body.get("name")
        update_id = self.new_update_id()
        if body.get("button") is not None:
            bot_message = self.state.last_bot_message.get(chat)
            if bot_message is None:
                return _json({"error": f"the bot has sent chat {chat} nothing to tap on"}, 409)
            query_id = str(secrets.randbelow(10**18))
            self.state.callback_queries.add(query_id)
            update = u.callback_update(update_id, query_id, chat, bot_message, str(body["button"]), name)
        else:
            update = u.text_update(update_id, chat, self.new_message_id(chat), str(body.get("text", "")), name)
        status = await self._deliver(update, float(body.get("timeout", 30.0)))
        return _json({"update_id": update_id, "status": status, "webhook": self.state.webhook.url})

    async def post_update(self, request: web.Request) -> web.Response:
        update = await request.json()
        update.setdefault("update_id", self.new_update_id())
        query = update.get("callback_query")
        if isinstance(query, dict) and query.get("id"):
            self.state.callback_queries.add(str(query["id"]))
        status = await self._deliver(update, float(request.query.get("timeout", "30")))
        return _json({"update_id": update["update_id"], "status": status})

    async def _deliver(self, update: Json, timeout: float) -> int | None:
        done = self.delivery.submit(update)
        try:
            return await asyncio.wait_for(asyncio.shield(done), timeout)
        except TimeoutError:
            return None

    async def add_file_route(self, request: web.Request) -> web.Response:
        file_id = self.add_file(await request.read(), request.query.get("name", "file.bin"))
        return _json({"file_id": file_id, "file_path": self.state.files[file_id][0]})

    async def deliveries(self, _request: web.Request) -> web.Response:
        return _json([{"update_id": a.update_id, "status": a.status, "at": a.at} for a in self.delivery.attempts])

    async def healthz(self, _request: web.Request) -> web.Response:
        return _json({"ok": True})


def default_webhook_url(settings: Settings) -> str:
    """Where Updates go before anyone calls setWebhook: the local Telegram gateway."""
    return settings.telegram.gateway_url or f"http://127.0.0.1:{settings.telegram.port}/webhooks/telegram"


def from_settings(settings: Settings) -> FakeBotApi:
    """A fake that accepts the gateway's token and sends its webhook secret."""
    token = settings.telegram.bot_token.get_secret_value() if settings.telegram.bot_token else DEV_TOKEN
    secret = settings.telegram.webhook_secret.get_secret_value() if settings.telegram.webhook_secret else None
    return FakeBotApi(token=token, default_webhook=default_webhook_url(settings), default_secret=secret)


#: The token ``beacon fake-telegram`` accepts when BEACON_TELEGRAM_BOT_TOKEN is unset.
DEV_TOKEN = "123456789:dev-fake-telegram-token"


@asynccontextmanager
async def running(fake: FakeBotApi, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[str]:
    """Serve ``fake`` on host:port (0: a free port) and yield its base URL."""
    runner = web.AppRunner(fake.app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    try:
        yield f"http://{host}:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()
