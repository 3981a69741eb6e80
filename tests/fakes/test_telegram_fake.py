"""The fake Bot API over real HTTP: token check, the documented answers and 400s, per-chat message
ids, the call log, errors on demand, files, and Telegram's side of webhooks (secret header,
redelivery of the same update_id until a 2xx)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from aiohttp import web

from beacon.fakes.telegram.server import FakeBotApi, running
from beacon.gateway.telegram.auth import HEADER
from beacon.gateway.telegram.parse import parse_update

TOKEN = "123456:fake-token"
SECRET = "hook-secret_1"


@pytest.fixture
async def fake() -> AsyncIterator[tuple[FakeBotApi, httpx.AsyncClient]]:
    api = FakeBotApi(token=TOKEN, retry_delay=0.01, max_attempts=5)
    async with running(api) as url, httpx.AsyncClient(base_url=url) as client:
        yield api, client


class Receiver:
    """A webhook that answers the statuses it is given in turn (then 200) and keeps what it got."""

    def __init__(self, answers: list[int]) -> None:
        self.answers = answers
        self.got: list[tuple[bytes, str | None]] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.got.append((await request.read(), request.headers.get(HEADER)))
        return web.Response(status=self.answers.pop(0) if self.answers else 200)


@asynccontextmanager
async def receiver(answers: list[int]) -> AsyncIterator[tuple[Receiver, str]]:
    hook = Receiver(answers)
    app = web.Application()
    app.router.add_post("/webhooks/telegram", hook.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield hook, f"http://127.0.0.1:{runner.addresses[0][1]}/webhooks/telegram"
    finally:
        await runner.cleanup()


async def _call(client: httpx.AsyncClient, method: str, token: str = TOKEN, **params: Any) -> httpx.Response:
    return await client.post(f"/bot{token}/{method}", json=params)


async def test_wrong_token_is_401_and_unknown_method_404(fake: tuple[FakeBotApi, httpx.AsyncClient]) -> None:
    _, c = fake
    r = await _call(c, "getMe", token="123456:wrong")
    assert r.status_code == 401 and r.json() == {"ok": False, "error_code": 401, "description": "Unauthorized"}
    r = await _call(c, "sendTelepathy")
    assert r.status_code == 404 and r.json()["description"] == "Not Found"
    me = (await _call(c, "getMe")).json()
    assert me["ok"] and me["result"]["id"] == 123456 and me["result"]["is_bot"] is True


async def test_sends_get_increasing_message_ids_per_chat_and_are_logged(
    fake: tuple[FakeBotApi, httpx.AsyncClient],
) -> None:
    _, c = fake
    ids = [(await _call(c, "sendMessage", chat_id=chat, text="hi")).json()["result"]["message_id"]
           for chat in (1, 1, 2, 1)]
    assert ids == [1, 2, 1, 3]
    photo = (await _call(c, "sendPhoto", chat_id=1, photo="FILE", caption="c")).json()["result"]
    assert photo["photo"][0]["file_id"] == "FILE" and photo["caption"] == "c" and photo["chat"]["id"] == 1
    form = await c.post(f"/bot{TOKEN}/sendChatAction", data={"chat_id": "1", "action": "typing"})
    assert form.json() == {"ok": True, "result": True}
    calls = (await c.get("/_fake/calls", params={"after": 4})).json()
    assert [(x["seq"], x["method"], x["chat_id"]) for x in calls] == [(5, "sendPhoto", 1), (6, "sendChatAction", 1)]


@pytest.mark.parametrize(("method", "params", "description"), [
    ("sendMessage", {"text": "x"}, "Bad Request: chat_id is empty"),
    ("sendMessage", {"chat_id": 1}, "Bad Request: message text is empty"),
    ("sendMessage", {"chat_id": 1, "text": "x" * 4097}, "Bad Request: message is too long"),
    ("sendMessage", {"chat_id": "@nobody", "text": "x"}, "Bad Request: chat not found"),
    ("sendPhoto", {"chat_id": 1}, "Bad Request: there is no photo in the request"),
    ("sendLocation", {"chat_id": 1, "latitude": 1}, "Bad Request: longitude is empty"),
    ("sendChatAction", {"chat_id": 1, "action": "dancing"}, "Bad Request: wrong parameter action in request"),
    ("sendMessage", {"chat_id": 1, "text": "x", "reply_markup": {"inline_keyboard": [[
        {"text": "b", "callback_data": "d" * 65}]]}}, "Bad Request: BUTTON_DATA_INVALID"),
    ("answerCallbackQuery", {"callback_query_id": "never"}, "Bad Request: query is too old"),
    ("getFile", {"file_id": "nope"}, "Bad Request: invalid file_id"),
])
async def test_bad_requests_are_refused_like_the_bot_api(
    fake: tuple[FakeBotApi, httpx.AsyncClient], method: str, params: dict[str, Any], description: str,
) -> None:
    _, c = fake
    r = await _call(c, method, **params)
    assert r.status_code == 400 and r.json()["ok"] is False and r.json()["error_code"] == 400
    assert r.json()["description"].startswith(description)


async def test_errors_on_demand_for_a_chat_or_the_bot(fake: tuple[FakeBotApi, httpx.AsyncClient]) -> None:
    _, c = fake
    await c.post("/_fake/fail", json={"error": 429, "chat_id": 7, "count": 1, "retry_after": 3})
    await c.post("/_fake/fail", json={"error": 403, "chat_id": 8})
    slow = await _call(c, "sendMessage", chat_id=7, text="a")
    assert slow.status_code == 429 and slow.json()["parameters"] == {"retry_after": 3}
    assert slow.json()["description"] == "Too Many Requests: retry after 3"
    assert (await _call(c, "sendMessage", chat_id=7, text="a")).status_code == 200
    blocked = (await _call(c, "sendMessage", chat_id=8, text="a")).json()
    assert blocked["error_code"] == 403 and blocked["description"] == "Forbidden: bot was blocked by the user"
    await c.delete("/_fake/fail")
    await c.post("/_fake/fail", json={"error": 502, "count": 1})
    proxy = await _call(c, "getMe")
    assert proxy.status_code == 502 and proxy.headers["content-type"].startswith("text/html")
    assert (await _call(c, "sendMessage", chat_id=8, text="a")).status_code == 200


async def test_files_are_served_by_path_with_the_token(fake: tuple[FakeBotApi, httpx.AsyncClient]) -> None:
    _, c = fake
    file_id = (await c.post("/_fake/files", content=b"\x89PNG...", params={"name": "a.png"})).json()["file_id"]
    info = (await _call(c, "getFile", file_id=file_id)).json()["result"]
    assert info["file_size"] == 7 and info["file_path"].endswith("a.png")
    assert (await c.get(f"/file/bot{TOKEN}/{info['file_path']}")).content == b"\x89PNG..."
    assert (await c.get(f"/file/bot123456:wrong/{info['file_path']}")).status_code == 401


async def test_webhook_gets_the_secret_and_a_500_is_redelivered_with_the_same_update_id(
    fake: tuple[FakeBotApi, httpx.AsyncClient],
) -> None:
    _, c = fake
    async with receiver([500, 500]) as (hook, url):
        r = await _call(c, "setWebhook", url=url, secret_token=SECRET, allowed_updates=["message"])
        assert r.json() == {"ok": True, "result": True}
        said = (await c.post("/_fake/say", json={"chat_id": 42, "text": "/ping", "name": "Ada L"})).json()
        assert said["status"] == 200
        assert [d["status"] for d in (await c.get("/_fake/deliveries")).json()] == [500, 500, 200]
        assert len(hook.got) == 3 and len({body for body, _ in hook.got}) == 1
        assert all(secret == SECRET for _, secret in hook.got)
        parsed = parse_update(hook.got[0][0], "123456")
        assert parsed.update_id == said["update_id"] and parsed.messages[0].text == "/ping"
        assert parsed.messages[0].profile_name == "Ada L"
        info = (await _call(c, "getWebhookInfo")).json()["result"]
        assert info["url"] == url and info["pending_update_count"] == 0 and info["allowed_updates"] == ["message"]
        assert info["last_error_message"] == "Wrong response from the webhook: 500 Internal Server Error"


async def test_a_button_tap_is_a_callback_query_the_bot_can_answer(
    fake: tuple[FakeBotApi, httpx.AsyncClient],
) -> None:
    _, c = fake
    async with receiver([]) as (hook, url):
        await _call(c, "setWebhook", url=url)
        keyboard = {"inline_keyboard": [[{"text": "Yes", "callback_data": "yes"}]]}
        await _call(c, "sendMessage", chat_id=42, text="Sure?", reply_markup=keyboard)
        said = (await c.post("/_fake/say", json={"chat_id": 42, "button": "yes"})).json()
        assert said["status"] == 200 and hook.got[0][1] is None  # no secret set
        parsed = parse_update(hook.got[0][0], "123456")
        reply = parsed.messages[0].interactive_reply
        assert reply is not None and reply.id == "yes" and reply.title == "Yes"
        assert parsed.callback_query_id is not None
        answered = await _call(c, "answerCallbackQuery", callback_query_id=parsed.callback_query_id)
        assert answered.json() == {"ok": True, "result": True}


async def test_say_without_a_webhook_says_so(fake: tuple[FakeBotApi, httpx.AsyncClient]) -> None:
    _, c = fake
    r = await c.post("/_fake/say", json={"chat_id": 1, "text": "hi"})
    assert r.status_code == 409 and "set-webhook" in r.json()["error"]
