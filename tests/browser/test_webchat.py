"""The web chat in a real browser (Debian's Chromium driven by Playwright) against a real stack: the
API layer, a worker and the web chat gateway as processes, on the session's broker and registry.

Proves: `/ping` is answered live; rapid messages are answered in order; a reload shows the history
once; two browsers are two visitors who never see each other's messages; a message that looks like
HTML shows as text; replies produced while the gateway was down are shown after it returns, in order,
once; images and buttons render, and pressing a button sends its reply. Over raw HTTP: a foreign
origin and a forged cookie are refused, a resend is deduplicated, the size and rate limits answer the
page with an error.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import aiohttp
import orjson
import pytest
from playwright.sync_api import Browser, Dialog, Page, expect

from beacon.codec import MessageCodec
from beacon.config import Settings
from beacon.kafka import AsyncProducer, ensure_topics
from beacon.messages import OUTBOUND, BeaconMessage, Media, make_user_key
from beacon.ops.lag import group_lag, total_lag
from beacon.ops.supervisor import Supervisor
from tests.conftest import ROOT
from tests.ops.stack import Stack, wait_for

pytestmark = pytest.mark.slow

WAIT_MS = 30_000
PROCESSES = ("api", "worker-1", "gateway-webchat")


class ChatStack:
    """A running stack with a supervisor, and the web chat's address."""

    def __init__(self, stack: Stack, sup: Supervisor) -> None:
        self.stack = stack
        self.sup = sup
        self.settings = stack.settings
        self.url = f"http://127.0.0.1:{stack.settings.webchat.port}/"

    def restart_gateway(self, while_down: Any = None) -> None:
        """Stop the web chat gateway, run ``while_down()``, start it again and wait until it listens."""
        spec = next(s for s in self.stack.specs() if s.name == "gateway-webchat")
        self.sup.remove("gateway-webchat")
        if while_down is not None:
            while_down()
        self.sup.add(spec)
        wait_for(self.stack.listening, "the web chat gateway to listen again", step=self.sup.poll)


@pytest.fixture(scope="module")
def chat(registry_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChatStack]:
    data_dir = tmp_path_factory.mktemp("webchat-stack")
    stack = Stack.create(registry_settings, lambda prefix: f"{prefix}-{uuid.uuid4().hex[:10]}", data_dir)
    s = stack.settings
    ensure_topics(s)
    MessageCodec(s).prepare([s.topics.inbound, s.topics.outbound])
    migrated = stack.beacon("api", "migrate")
    assert migrated.returncode == 0, migrated.stderr
    sup = Supervisor(data_dir / "logs", report=print)
    try:
        for spec in stack.specs():
            if spec.name in PROCESSES:
                sup.add(spec)

        def up() -> bool:
            from beacon.ops.process import port_open
            return all(port_open("127.0.0.1", p) for p in (s.api.port, s.webchat.port))

        wait_for(up, "the API and the web chat gateway to listen", timeout=90, step=sup.poll)
        stack.listening = up  # type: ignore[method-assign]
        yield ChatStack(stack, sup)
    finally:
        sup.stop()


#: What the browser reported as errors during the current test (console errors, uncaught exceptions):
#: a Content-Security-Policy violation or a script error shows here.
browser_errors: list[str] = []


@pytest.fixture(autouse=True)
def no_browser_errors() -> Iterator[None]:
    browser_errors.clear()
    yield
    assert browser_errors == []


def open_chat(browser: Browser, chat: ChatStack) -> Page:
    """A new visitor (own cookies) with the chat page open and connected."""
    page = browser.new_context().new_page()
    page.on("console", lambda m: browser_errors.append(f"console: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda exc: browser_errors.append(f"uncaught: {exc}"))
    page.goto(chat.url)
    expect(page.locator("#status")).to_have_text("online", timeout=WAIT_MS)
    return page


def say(page: Page, text: str, *, enter: bool = True) -> None:
    page.get_by_label("Message").fill(text)
    if enter:
        page.get_by_label("Message").press("Enter")
    else:
        page.get_by_role("button", name="Send").click()


def bot(page: Page) -> Any:
    return page.get_by_role("log").locator('[data-from="bot"]')


def user(page: Page) -> Any:
    return page.get_by_role("log").locator('[data-from="user"]')


def visitor_id(page: Page) -> str:
    cookie = next(c for c in page.context.cookies() if c["name"] == "beacon_visitor")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"
    return str(cookie["value"]).split(".")[0]


def run_async(coro: Coroutine[Any, Any, None]) -> None:
    """Run ``coro`` to the end in a thread of its own (Playwright's sync API keeps a loop in this one)."""
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, coro).result(timeout=120)


def produce_replies(settings: Settings, visitor: str, replies: list[BeaconMessage]) -> None:
    """Put replies on bm_out as the workers (or the API's proactive send) would."""

    async def main() -> None:
        producer = AsyncProducer(settings)
        codec = MessageCodec(settings)
        try:
            for msg in replies:
                await producer.produce(settings.topics.outbound, codec.encode(msg, settings.topics.outbound),
                                       key=msg.user_key.encode())
        finally:
            producer.close()

    run_async(main())


def reply(settings: Settings, visitor: str, **content: Any) -> BeaconMessage:
    site = settings.webchat.site
    return BeaconMessage(id=str(uuid.uuid4()), user_key=make_user_key("webchat", site, visitor), channel="webchat",
                         account=site, user_id=visitor, direction=OUTBOUND, **content)


def test_ping_is_answered_live_and_a_reload_shows_the_history_once(browser: Browser, chat: ChatStack) -> None:
    page = open_chat(browser, chat)
    say(page, "/ping")
    expect(bot(page)).to_have_text(["pong"], timeout=WAIT_MS)
    expect(user(page)).to_have_text(["/ping"])
    page.reload()
    expect(page.locator("#status")).to_have_text("online", timeout=WAIT_MS)
    expect(user(page)).to_have_text(["/ping"], timeout=WAIT_MS)
    expect(bot(page)).to_have_text(["pong"])


def test_rapid_messages_are_answered_in_order(browser: Browser, chat: ChatStack) -> None:
    page = open_chat(browser, chat)
    texts = [f"rapid {i}" for i in range(6)]
    for i, text in enumerate(texts):
        say(page, text, enter=i % 2 == 0)
    expect(bot(page)).to_have_text([f"You said: {t}" for t in texts], timeout=WAIT_MS)
    expect(user(page)).to_have_text(texts)


def test_two_browsers_are_two_visitors_who_never_see_each_other(browser: Browser, chat: ChatStack) -> None:
    alice, bob = open_chat(browser, chat), open_chat(browser, chat)
    assert visitor_id(alice) != visitor_id(bob)
    say(alice, "alice's secret")
    say(bob, "bob here")
    expect(bot(alice)).to_have_text(["You said: alice's secret"], timeout=WAIT_MS)
    expect(bot(bob)).to_have_text(["You said: bob here"], timeout=WAIT_MS)
    bob.reload()
    expect(bot(bob)).to_have_text(["You said: bob here"], timeout=WAIT_MS)
    assert "alice" not in bob.get_by_role("log").inner_text()


def test_a_message_that_looks_like_html_is_shown_as_text(browser: Browser, chat: ChatStack) -> None:
    page = open_chat(browser, chat)
    dialogs: list[str] = []

    def on_dialog(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    attack = "<img src=x onerror=alert(1)>"
    say(page, attack)
    expect(bot(page)).to_have_text([f"You said: {attack}"], timeout=WAIT_MS)
    expect(user(page)).to_have_text([attack])
    assert page.get_by_role("log").locator("img").count() == 0
    assert dialogs == []


def test_replies_produced_while_the_gateway_was_down_are_shown_in_order_once(
    browser: Browser, chat: ChatStack
) -> None:
    page = open_chat(browser, chat)
    say(page, "/ping")
    expect(bot(page)).to_have_text(["pong"], timeout=WAIT_MS)
    visitor = visitor_id(page)
    away = [reply(chat.settings, visitor, kind="text", text=f"while you were away {i}") for i in range(3)]

    def while_down() -> None:
        expect(page.locator("#status")).to_have_text("reconnecting…", timeout=WAIT_MS)
        produce_replies(chat.settings, visitor, away)

    chat.restart_gateway(while_down)
    expect(bot(page)).to_have_text(["pong", *(m.text for m in away)], timeout=WAIT_MS)
    # A later message answered proves the page caught up; the replies were still shown once.
    say(page, "after the restart")
    expect(bot(page)).to_have_text(["pong", *(m.text for m in away), "You said: after the restart"], timeout=WAIT_MS)
    page.reload()
    expect(bot(page)).to_have_text(["pong", *(m.text for m in away), "You said: after the restart"], timeout=WAIT_MS)
    # the browser reports the page's reconnect attempts while the gateway was down: expected
    browser_errors[:] = [e for e in browser_errors if "WebSocket connection" not in e]


def test_images_and_buttons_render_and_a_button_sends_its_reply(browser: Browser, chat: ChatStack) -> None:
    page = open_chat(browser, chat)
    say(page, "hello")
    expect(bot(page)).to_have_text(["You said: hello"], timeout=WAIT_MS)
    visitor = visitor_id(page)
    picture = chat.url + "static/beacon.svg"
    buttons = {"type": "button", "body": {"text": "Did that help?"},
               "action": {"buttons": [{"type": "reply", "reply": {"id": "yes", "title": "Yes"}},
                                      {"type": "reply", "reply": {"id": "no", "title": "No"}}]}}
    produce_replies(chat.settings, visitor, [
        reply(chat.settings, visitor, kind="image", media=Media(link=picture, caption="A lighthouse")),
        reply(chat.settings, visitor, kind="interactive", payload=orjson.dumps(buttons).decode()),
    ])
    image = bot(page).nth(1).locator("img")
    expect(image).to_have_attribute("src", picture, timeout=WAIT_MS)
    expect(image).to_have_js_property("complete", True)
    assert image.evaluate("img => img.naturalWidth") > 0  # loaded and shown, not a broken icon
    expect(bot(page).nth(1)).to_contain_text("A lighthouse")
    expect(bot(page).nth(2)).to_contain_text("Did that help?")
    bot(page).nth(2).get_by_role("button", name="Yes").click()
    expect(bot(page).last).to_have_text("You chose: Yes", timeout=WAIT_MS)
    expect(user(page).last).to_have_text("Yes")
    listing = {"type": "list", "body": {"text": "Pick a colour"}, "action": {"button": "Colours", "sections": [
        {"title": "Warm", "rows": [{"id": "red", "title": "Red"}]},
        {"title": "Cool", "rows": [{"id": "blue", "title": "Blue", "description": "like the sea"}]}]}}
    other_site = reply(chat.settings, visitor, kind="text", text="for another site").model_copy(
        update={"account": "other-site", "user_key": make_user_key("webchat", "other-site", visitor)})
    receipt = reply(chat.settings, visitor, kind="read_receipt", channel_message_id="m1")
    produce_replies(chat.settings, visitor, [other_site, receipt, reply(
        chat.settings, visitor, kind="interactive", payload=orjson.dumps(listing).decode())])
    expect(bot(page).nth(4)).to_contain_text("Pick a colour", timeout=WAIT_MS)
    # once the gateway committed all of bm_out, another site's reply and the read receipt were left out
    s = chat.settings
    wait_for(lambda: total_lag(group_lag(s, s.webchat.gateway_group, s.topics.outbound)) == 0, "the web chat to commit")
    expect(bot(page)).to_have_count(5)
    assert "another site" not in page.get_by_role("log").inner_text()
    bot(page).nth(4).get_by_role("button", name="Blue").click()
    expect(bot(page).last).to_have_text("You chose: Blue", timeout=WAIT_MS)
    if os.environ.get("BEACON_SCREENSHOTS") == "1":
        say(page, "/ping")
        expect(bot(page).last).to_have_text("pong", timeout=WAIT_MS)
        page.set_viewport_size({"width": 900, "height": 1010})
        page.screenshot(path=str(ROOT / "docs" / "webchat.png"))


# --- over raw HTTP: what a page cannot be made to do -----------------------------------------------


async def _socket(chat: ChatStack, *, origin: str | None, cookie: str | None) -> tuple[int, Any]:
    headers = {"Origin": origin} if origin else {}
    if cookie:
        headers["Cookie"] = f"beacon_visitor={cookie}"
    session = aiohttp.ClientSession()
    try:
        ws = await session.ws_connect(chat.url + "ws", headers=headers)
    except aiohttp.WSServerHandshakeError as exc:
        await session.close()
        return exc.status, None
    return 101, (session, ws)


async def _cookie(chat: ChatStack) -> str:
    async with aiohttp.ClientSession() as session, session.get(chat.url) as resp:
        assert resp.status == 200
        assert "Content-Security-Policy" in resp.headers
        return resp.cookies["beacon_visitor"].value


def test_foreign_origins_and_forged_cookies_are_refused(chat: ChatStack) -> None:
    async def main() -> None:
        cookie = await _cookie(chat)
        own = chat.url.rstrip("/")
        status, _ = await _socket(chat, origin="https://evil.example", cookie=cookie)
        assert status == 403
        status, _ = await _socket(chat, origin=None, cookie=cookie)
        assert status == 403
        forged = cookie.split(".")[0] + ".AAAA"
        status, _ = await _socket(chat, origin=own, cookie=forged)
        assert status == 401
        status, opened = await _socket(chat, origin=own, cookie=cookie)
        assert status == 101
        session, ws = opened
        await ws.close()
        await session.close()

    run_async(main())


def test_a_resend_is_deduplicated_and_limits_answer_with_an_error(chat: ChatStack) -> None:
    async def main() -> None:
        cookie = await _cookie(chat)
        status, opened = await _socket(chat, origin=chat.url.rstrip("/"), cookie=cookie)
        assert status == 101
        session, ws = opened
        try:
            frame = {"type": "send", "client_id": uuid.uuid4().hex, "text": "once"}
            await ws.send_json(frame)
            first = await ws.receive_json(timeout=20)
            await ws.send_json(frame)
            again = await ws.receive_json(timeout=20)
            assert first["type"] == again["type"] == "message" and first["seq"] == again["seq"], (first, again)
            limit = chat.settings.webchat.max_message_chars
            await ws.send_json({"type": "send", "client_id": uuid.uuid4().hex, "text": "x" * (limit + 1)})
            assert (await ws.receive_json(timeout=20))["code"] == "too_large"
            codes = []
            # far more than the burst, sent at once: the refill during the burst cannot cover them all
            for i in range(chat.settings.webchat.visitor_burst + 20):
                await ws.send_json({"type": "send", "client_id": uuid.uuid4().hex, "text": f"burst {i}"})
            while "rate_limited" not in codes:
                got = await ws.receive_json(timeout=20)
                codes.append(got.get("code", got["type"]))
            rate_error = got
            assert "too fast" in rate_error["message"]
        finally:
            await ws.close()
            await session.close()

    run_async(main())


def test_health_and_metrics_answer(chat: ChatStack) -> None:
    async def main() -> None:
        async with aiohttp.ClientSession() as session:
            async with session.get(chat.url + "healthz") as resp:
                assert resp.status == 200 and (await resp.json())["ok"] is True
            async with session.get(chat.url + "metrics") as resp:
                text = await resp.text()
                assert resp.status == 200 and "beacon_webchat_connections" in text, text[:500]
            async with session.get(chat.url + "static/../app.py") as resp:
                assert resp.status == 404

    run_async(main())
