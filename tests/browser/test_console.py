"""The operator console in a real browser against a real stack: `beacon dev` (API, a worker, the fake
Cloud API, the WhatsApp gateway and the console) on the session's broker and registry, with fresh
topics, groups, ports and data dir. A user writes through the fake, a dead letter is produced by the
real `beacon.dlq` helper, and every page is read in headless Chromium."""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from beacon import kafka
from beacon.codec import MessageCodec
from beacon.config import Settings
from beacon.dlq import dead_letter
from beacon.messages import BeaconMessage
from beacon.ops.deadletters import H_REDRIVEN_FROM
from tests.browser.conftest import BrowserPage
from tests.ops.stack import Stack, wait_for

pytestmark = pytest.mark.slow

TOKEN = "operator-test-token-7f3a9c"
XSS = "<img src=x onerror=alert(1)>"
USER = "447700900555"
DLQ_REASON = "rejected for the console test: the order id is unknown"


@dataclass
class Running:
    stack: Stack
    url: str
    user_key: str
    dlq_ref: str
    dead_id: str


@pytest.fixture(scope="module")
def running(registry_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    counter = iter(range(1000))

    def unique(prefix: str) -> str:
        import uuid
        return f"{prefix}-{uuid.uuid4().hex[:8]}-{next(counter)}"

    tmp = tmp_path_factory.mktemp("console")
    stack = Stack.create(registry_settings, unique, tmp, workers=1)
    stack.env["BEACON_CONSOLE_TOKEN"] = TOKEN
    settings = stack.settings
    out = tmp / "dev.out"
    with out.open("w") as fh:
        dev = subprocess.Popen([sys.executable, "-m", "beacon", "dev", "--keep-services"], env=stack.env,
                               stdout=fh, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(lambda: "Ctrl-C stops everything." in out.read_text() or dev.poll() is not None,
                 "beacon dev to announce the stack", timeout=150)
        assert dev.poll() is None, out.read_text()
        url = f"http://127.0.0.1:{settings.console.port}"
        assert f"{url}/login?token={TOKEN}" in out.read_text()
        user_key = f"whatsapp:{settings.whatsapp.phone_number_id}:{USER}"
        with httpx.Client(timeout=10) as client:
            # The fake answers each send with sent, delivered and read statuses, as WhatsApp does.
            assert client.post(f"{stack.fake_url}/_fake/config", json={"statuses": True}).status_code == 200
            stack.say(client, USER, XSS)
            stack.say(client, USER, "/ping")

            def read_by_the_user() -> bool:
                r = client.get(f"http://127.0.0.1:{settings.api.port}/v1/users/{user_key}/messages",
                               headers={"Authorization": f"Bearer {stack.env.get('BEACON_API_TOKEN', 'dev-token')}"})
                stored = r.json()["messages"] if r.status_code == 200 else []
                return any(m["message"]["text"] == "pong" and m["delivery_status"] == "read" for m in stored)

            wait_for(read_by_the_user, "the bot's pong, read by the user (statuses through the stack)", timeout=90)
        dead = BeaconMessage.inbound_text(channel="whatsapp", account=settings.whatsapp.phone_number_id,
                                          user_id="447700900777", text="order 4711 please")
        value = MessageCodec(settings).encode(dead, settings.topics.inbound)

        async def produce_dead_letter() -> None:
            producer = kafka.AsyncProducer(settings)
            try:
                await dead_letter(producer, settings, key=dead.user_key.encode(), value=value,
                                  topic=settings.topics.inbound, partition=0, offset=3, error=DLQ_REASON, attempts=4,
                                  origin="console-test")
            finally:
                producer.close()

        # In a thread of its own: Playwright's sync API keeps an event loop running in this one.
        with ThreadPoolExecutor(1) as pool:
            pool.submit(asyncio.run, produce_dead_letter()).result(timeout=60)
        parts = kafka.topic_partitions(settings, settings.topics.dlq)
        high = kafka.list_topic_offsets(settings, settings.topics.dlq, parts, "latest")
        (ref,) = [f"{p}:{o - 1}" for p, o in high.items() if o > 0]
        yield Running(stack, url, user_key, ref, dead.id)
    finally:
        dev.send_signal(signal.SIGINT)
        try:
            dev.wait(timeout=60)
        except subprocess.TimeoutExpired:
            dev.kill()


def log_in(bp: BrowserPage, running: Running, path: str = "/") -> Any:
    page = bp.page
    page.goto(running.url + path)
    page.get_by_label("Operator token").fill(TOKEN)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_load_state()
    return page


def test_login_is_refused_without_the_token_and_with_a_wrong_one(browser_page: BrowserPage,
                                                                   running: Running) -> None:
    with httpx.Client(base_url=running.url, timeout=10) as client:
        for path in ("/", "/topics", "/deadletters", "/schemas", "/conversations", "/overview/chart"):
            r = client.get(path)
            assert r.status_code == 303 and r.headers["location"].startswith("/login"), (path, r.status_code)
        client.cookies.set("beacon_console", "abc.1.deadbeef")
        assert client.get("/").status_code == 303  # a forged cookie is no login
        client.cookies.clear()
        # A redrive without a session goes nowhere.
        r = client.post("/deadletters/redrive", data={"ref": running.dlq_ref, "confirm": "yes"},
                        headers={"Origin": running.url})
        assert r.status_code == 303 and r.headers["location"].startswith("/login")
    page = browser_page.page
    page.goto(running.url + "/deadletters")
    assert page.url.startswith(running.url + "/login")
    page.get_by_label("Operator token").fill("not-the-token")
    page.get_by_role("button", name="Log in").click()
    assert "wrong token" in page.get_by_role("alert").inner_text()
    assert not [c for c in page.context.cookies() if c["name"] == "beacon_console"]
    browser_page.screenshot("console-login")
    page.get_by_label("Operator token").fill(TOKEN)
    page.get_by_role("button", name="Log in").click()
    page.get_by_role("heading", name="Dead letters").wait_for()
    (cookie,) = [c for c in page.context.cookies() if c["name"] == "beacon_console"]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    # The only error the browser saw is the refused login's 401.
    assert [e for e in browser_page.errors if "status of 401" not in e] == [], browser_page.errors
    assert len(browser_page.errors) == 1, browser_page.errors


def test_overview_shows_each_process_healthy_the_chart_lag_and_dead_letters(browser_page: BrowserPage,
                                                                             running: Running) -> None:
    page = browser_page.page
    page.goto(f"{running.url}/login?token={TOKEN}")  # the login link `beacon dev` printed
    page.get_by_role("heading", name="Overview").wait_for()
    assert page.url == running.url + "/"
    rows = page.locator("table").first.locator("tbody tr")
    health = {r.locator("td").nth(0).inner_text(): r.locator("td").nth(1).inner_text() for r in rows.all()}
    assert health == {name: "up" for name in ("api", "worker-1", "console", "fake-whatsapp", "gateway-whatsapp",
                                              "gateway-telegram", "gateway-webchat")}
    assert page.locator("#chart svg").count() == 1
    s = running.stack.settings
    body = page.locator("main").inner_text()
    assert s.workers.group in body and s.whatsapp.gateway_group in body
    assert re.search(r"1 record\(s\) on " + re.escape(s.topics.dlq), body)
    # The chart refreshes from samples of the end offsets: it reaches the rate of the messages above.
    wait_for(lambda: page.locator("#chart polyline").count() == 2, "two lines on the chart", timeout=30)
    browser_page.screenshot("console-overview")
    assert browser_page.errors == [], browser_page.errors


def test_conversations_find_the_user_by_text_and_show_the_xss_string_as_text(browser_page: BrowserPage,
                                                                             running: Running) -> None:
    page = log_in(browser_page, running, "/conversations")
    page.get_by_label("User key or text").fill("onerror")
    page.get_by_role("button", name="Find").click()
    page.get_by_role("link", name=running.user_key).click()
    page.get_by_role("heading", name="Conversation").wait_for()
    main = page.locator("main")
    text = main.inner_text()
    assert XSS in text and "/ping" in text and "pong" in text and "You said: " + XSS in text
    assert main.locator("img").count() == 0
    assert "inbound → reply" in text and "channel → gateway" in text and "reply → read" in text
    browser_page.screenshot("console-conversations")
    assert browser_page.errors == [], browser_page.errors


def test_topics_decode_records_through_the_registry_with_schema_version_and_headers(
        browser_page: BrowserPage, running: Running) -> None:
    page = log_in(browser_page, running, f"/topics?topic=in&key={running.user_key}")
    page.get_by_role("heading", name="Topics").wait_for()
    main = page.locator("main")
    text = main.inner_text()
    s = running.stack.settings
    assert re.search(r"id \d+ \([^)]*" + re.escape(s.topics.inbound) + r"-value v1\b", text), text
    assert '"text": "/ping"' in text and XSS in text and main.locator("img").count() == 0
    # By partition and offset: the records of one partition from an offset on.
    parts = kafka.topic_partitions(s, s.topics.inbound)
    ends = kafka.list_topic_offsets(s, s.topics.inbound, parts, "latest")
    busiest = max(ends, key=lambda p: ends[p])
    assert ends[busiest] >= 3, ends  # the user's two messages and their replies' statuses
    page.goto(running.url + f"/topics?topic=in&partition={busiest}&offset=1")
    cells = page.locator("main table").nth(1).locator("tbody tr td:first-child").all_inner_texts()
    assert cells == [f"{busiest}:{o}" for o in range(1, ends[busiest])], cells
    page.get_by_label("Topic").select_option("dlq")
    page.get_by_label("Partition").select_option("")
    page.get_by_label("User key").fill("")
    page.get_by_role("button", name="Show").click()
    page.get_by_text(DLQ_REASON).first.wait_for()
    assert "beacon.dlq.error.text" in main.inner_text()
    page.goto(running.url + f"/topics?topic=out&key={running.user_key}")
    assert '"text": "pong"' in page.locator("main").inner_text()
    # Browsing assigned partitions and committed nothing: the broker knows no group of the console's readers.
    admin = kafka.make_admin(s)
    listed = admin.list_consumer_groups(request_timeout=10).result(timeout=20)
    groups = [g.group_id for g in listed.valid]
    assert s.workers.group in groups and not [g for g in groups if g.startswith("beacon-console-")], groups
    browser_page.screenshot("console-topics")
    assert browser_page.errors == [], browser_page.errors


def test_a_redrive_from_the_dead_letters_page_republishes_the_record(browser_page: BrowserPage,
                                                                     running: Running) -> None:
    s = running.stack.settings
    parts = kafka.topic_partitions(s, s.topics.inbound)
    before = kafka.list_topic_offsets(s, s.topics.inbound, parts, "latest")
    # A logged-in POST without the page's CSRF token, or from another origin, redrives nothing.
    with httpx.Client(base_url=running.url, timeout=10) as client:
        r = client.post("/login", data={"token": TOKEN, "next": "/"}, headers={"Origin": running.url})
        assert r.status_code == 303 and "beacon_console" in client.cookies
        found_csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', client.get("/deadletters").text)
        assert found_csrf is not None
        forged = {"ref": running.dlq_ref, "confirm": "yes"}
        for headers, data in (({"Origin": running.url}, forged),
                              ({"Origin": "http://evil.example"}, {**forged, "csrf": found_csrf.group(1)}),
                              ({}, {**forged, "csrf": found_csrf.group(1)})):
            assert client.post("/deadletters/redrive", data=data, headers=headers).status_code == 403, headers
    page = log_in(browser_page, running, "/deadletters")
    main = page.locator("main")
    assert DLQ_REASON in main.inner_text() and "console-test" in main.inner_text()
    browser_page.screenshot("console-deadletters")
    page.get_by_label(f"select {running.dlq_ref}").check()
    page.get_by_role("button", name="Redrive selected…").click()
    page.get_by_role("button", name="Yes, redrive").wait_for()
    assert kafka.list_topic_offsets(s, s.topics.inbound, parts, "latest") == before  # nothing before the confirmation
    page.get_by_role("button", name="Yes, redrive").click()
    assert "Redriven: 1 record(s)." in page.get_by_role("status").inner_text()
    assert browser_page.errors == [], browser_page.errors
    # The record is on its source topic again, with the original value and where it came from.
    codec = MessageCodec(s)
    consumer = kafka.make_consumer(s, "console-test-reader-never-commits")
    found: list[tuple[str, str | bytes]] = []
    try:
        consumer.assign([kafka.TopicPartition(s.topics.inbound, p, before[p]) for p in parts])

        def redriven() -> bool:
            msg = consumer.poll(0.2)
            if msg is not None and not msg.error():
                headers = dict(msg.headers() or [])
                if codec.decode(msg.value(), topic=s.topics.inbound).id == running.dead_id:
                    found.append((s.topics.inbound, headers.get(H_REDRIVEN_FROM) or b""))
            return bool(found)

        wait_for(redriven, "the redriven record on the inbound topic", timeout=30)
    finally:
        consumer.close()
    assert found == [(s.topics.inbound, f"{s.topics.dlq}:{running.dlq_ref}".encode())]


def test_schemas_page_lists_the_registered_versions_and_the_compatibility_level(browser_page: BrowserPage,
                                                                                running: Running) -> None:
    page = log_in(browser_page, running, "/schemas")
    s = running.stack.settings
    page.get_by_role("heading", name=f"{s.topics.inbound}-value").wait_for()
    text = page.locator("main").inner_text()
    assert f"{s.topics.outbound}-value" in text and "Compatibility:" in text
    assert s.registry.compatibility in text  # `beacon dev` set it, as `beacon schemas register` does
    assert re.search(r"version\s+schema id\s+1\s+\d+", text), text
    browser_page.screenshot("console-schemas")
    assert browser_page.errors == [], browser_page.errors




def test_an_operator_takes_a_conversation_over_replies_and_hands_it_back(browser_page: BrowserPage,
                                                                         running: Running) -> None:
    stack, user = running.stack, "447700900666"
    user_key = f"whatsapp:{stack.settings.whatsapp.phone_number_id}:{user}"
    operator_text = "Hi, this is Alice from the team: your order ships today."
    with httpx.Client(timeout=10) as client:
        stack.say(client, user, "where is my order?")
        wait_for(lambda: any("You said: where is my order?" in str(s["body"]) for s in stack.sent(client)),
                 "the bot's answer to the user's first message", timeout=60)
    page = log_in(browser_page, running, f"/conversations/{user_key}")
    assert "The bot answers this user." in page.locator("#handoff").inner_text()
    page.get_by_label("Operator").fill("alice")
    page.get_by_label("Reason").fill("order question")
    page.get_by_role("button", name="Take over").click()
    page.get_by_role("button", name="Hand back").wait_for()
    box = page.locator("#handoff").inner_text()
    assert "A person answers this user: operator (by alice: order question)" in box
    assert "handed_off" in page.locator("main table").inner_text()

    page.get_by_label("Reply as the operator").fill(operator_text)
    page.get_by_role("button", name="Send").click()
    page.get_by_role("button", name="Hand back").wait_for()
    with httpx.Client(timeout=10) as client:
        wait_for(lambda: any(operator_text in str(s["body"]) for s in stack.sent(client)),
                 "the operator's reply at the fake Cloud API, sent by the gateway", timeout=60)
    page.reload()
    assert operator_text in page.locator("main table").inner_text()
    browser_page.screenshot("console-conversation-handoff")

    page.get_by_role("button", name="Hand back").click()
    page.get_by_role("button", name="Take over").wait_for()
    assert "handed_back" in page.locator("main table").inner_text()
    assert browser_page.errors == [], browser_page.errors
