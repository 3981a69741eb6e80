"""The Telegram gateway through the shared framework: the whole process half in-process (webhooks in, the
sender out), the real broker and registry, the fake Bot API over real HTTP delivering Updates to it.
Auth refused with nothing queued, a redelivered Update answered once, order per chat, 429 waits
``retry_after``, a user who blocked the bot is dead-lettered, reported failed and opted out, a button
press is queued and then answered."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web
from pydantic import SecretStr

from beacon.codec import MessageCodec
from beacon.config import Settings
from beacon.dlq import read_dlq_headers
from beacon.fakes.telegram import updates as u
from beacon.fakes.telegram.server import DEV_TOKEN, FakeBotApi, running
from beacon.gateway.service import Gateway
from beacon.gateway.telegram.auth import HEADER
from beacon.gateway.telegram.channel import TelegramChannel
from beacon.kafka import AsyncProducer
from beacon.messages import BeaconMessage
from beacon.ops.process import free_port
from beacon.streams.processor import typing_receipt
from tests.gateway.conftest import aread_topic, await_committed, serve

BOT = DEV_TOKEN.partition(":")[0]
SECRET = "test-telegram-secret"


@dataclass
class Telegram:
    settings: Settings
    fake: FakeBotApi
    http: httpx.AsyncClient  #: the fake's control endpoints
    webhook: str
    codec: MessageCodec
    producer: AsyncProducer
    opted_out: list[tuple[str, Any]] = field(default_factory=list)

    async def produce(self, msgs: list[BeaconMessage]) -> None:
        topic = self.settings.topics.outbound
        await asyncio.gather(*[self.producer.produce(topic, self.codec.encode(m, topic), key=m.user_key.encode())
                               for m in msgs])

    async def settled(self) -> list[dict[str, Any]]:
        """Every Bot API call, once the sender committed every record of bm_out: nothing more will be sent."""
        await await_committed(self.settings, self.settings.telegram.gateway_group, self.settings.topics.outbound)
        return list(self.fake.state.calls)

    async def topic(self, topic: str) -> list[BeaconMessage]:
        return [self.codec.decode(r.value(), topic=topic) for r in await aread_topic(self.settings, topic, 0)]

    async def say(self, chat: int, text: str) -> None:
        answer = (await self.http.post("/_fake/say", json={"chat_id": chat, "text": text})).json()
        assert answer["status"] == 200, answer


def reply(chat: int, text: str, message_id: int = 1) -> BeaconMessage:
    inbound = BeaconMessage.inbound_text(channel="telegram", account=BOT, user_id=str(chat), text="hi",
                                         channel_message_id=f"{chat}:{message_id}:{text}")
    return inbound.reply_text(text)


def typing_to(calls: list[dict[str, Any]], chat: int) -> int:
    return sum(1 for c in calls if c["method"] == "sendChatAction" and c["chat_id"] == chat and c["status"] == 200)


async def wait_calls(tg: Telegram, check: Callable[[list[dict[str, Any]]], bool], what: str) -> None:
    deadline = time.monotonic() + 20
    while not check(list(tg.fake.state.calls)):
        assert time.monotonic() < deadline, f"timed out waiting for {what}: {list(tg.fake.state.calls)[-10:]}"
        await asyncio.sleep(0.05)


def texts_to(calls: list[dict[str, Any]], chat: int) -> list[str]:
    return [c["params"]["text"] for c in calls if c["method"] == "sendMessage" and c["chat_id"] == chat
            and c["status"] == 200]


@pytest.fixture
async def tg(registry_settings: Settings, new_topic: Callable[..., str], unique: Callable[[str], str],
             tmp_path: Path) -> AsyncIterator[Telegram]:
    port = free_port()
    webhook = f"http://127.0.0.1:{port}/webhooks/telegram"
    fake = FakeBotApi(token=DEV_TOKEN, default_webhook=webhook, default_secret=SECRET, retry_delay=0.05)
    opted_out: list[tuple[str, Any]] = []

    async def opt_out(request: web.Request) -> web.Response:  # the API's operator endpoint, as a stub
        opted_out.append((request.match_info["key"], await request.json()))
        return web.json_response({"user_key": request.match_info["key"]})

    api = web.Application()
    api.router.add_put("/v1/users/{key}/opt-out", opt_out)
    async with running(fake) as fake_url, serve(api) as api_url:
        settings = registry_settings.replace(
            topic_in=new_topic(4, "bm_in"),
            topic_out=new_topic(4, "bm_out"),
            topic_dlq=new_topic(1, "dlq"),
            telegram_bot_token=SecretStr(DEV_TOKEN),
            telegram_api_url=fake_url,
            telegram_webhook_secret=SecretStr(SECRET),
            telegram_port=port,
            telegram_gateway_group=unique("tg"),
            telegram_sent_store=tmp_path / "sent.db",
            telegram_rate_limit=0.0,
            telegram_chat_rate=0.0,
            telegram_retry_base_delay=0.02,
            telegram_retry_max_delay=0.2,
            api_url=api_url,
            telegram_typing_refresh=0.3,
        )
        codec = MessageCodec(settings)
        codec.prepare([settings.topics.inbound, settings.topics.outbound])
        producer = AsyncProducer(settings)
        gateway = Gateway(settings, TelegramChannel(settings))
        task = asyncio.create_task(gateway.serve())
        async with httpx.AsyncClient(base_url=fake_url, timeout=30) as http:
            deadline = time.monotonic() + 30
            while True:
                assert not task.done(), "the gateway stopped during start-up"
                try:
                    if (await http.get(f"http://127.0.0.1:{port}/healthz")).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, "the gateway did not listen"
                await asyncio.sleep(0.1)
            try:
                yield Telegram(settings, fake, http, webhook, codec, producer, opted_out)
            finally:
                gateway.stop()
                await asyncio.wait_for(task, 60)
                producer.close()


async def test_webhooks_without_the_secret_are_refused_and_nothing_is_queued(tg: Telegram) -> None:
    forged = u.text_update(1, 111, 1, "forged")
    async with httpx.AsyncClient() as c:
        assert (await c.post(tg.webhook, json=forged)).status_code == 401
        assert (await c.post(tg.webhook, json=forged, headers={HEADER: "not-the-secret"})).status_code == 403
    await tg.say(111, "real")  # answered 200 only once the broker acknowledged it
    assert [m.text for m in await tg.topic(tg.settings.topics.inbound)] == ["real"]


async def test_a_redelivered_update_is_answered_once(tg: Telegram) -> None:
    update = u.text_update(777, 222, 5, "say it once")
    for _ in range(2):  # Telegram retries an Update until it gets a 2xx: the same update_id and message
        answer = (await tg.http.post("/_fake/updates", json=update)).json()
        assert answer["status"] == 200
    first, second = await tg.topic(tg.settings.topics.inbound)
    assert first.id == second.id and first.user_key == f"telegram:{BOT}:222"
    # a worker processing both (or re-processing one) yields the same reply id each time
    await tg.produce([first.reply_text("You said: say it once"), second.reply_text("You said: say it once")])
    assert texts_to(await tg.settled(), 222) == ["You said: say it once"]


async def test_replies_keep_their_order_per_chat_with_chats_concurrent(tg: Telegram) -> None:
    chats = [300 + c for c in range(8)]
    await tg.produce([reply(c, f"{c} #{i}") for i in range(6) for c in chats])
    calls = await tg.settled()
    for c in chats:
        assert texts_to(calls, c) == [f"{c} #{i}" for i in range(6)]


async def test_a_429_waits_its_retry_after_for_that_chat_then_sends(tg: Telegram) -> None:
    await tg.http.post("/_fake/fail", json={"error": 429, "chat_id": 401, "count": 1, "retry_after": 1})
    await tg.produce([reply(401, "a"), reply(401, "b"), reply(402, "other chat")])
    calls = await tg.settled()
    to_401 = [c for c in calls if c["chat_id"] == 401]
    assert [c["status"] for c in to_401] == [429, 200, 200] and texts_to(calls, 401) == ["a", "b"]
    assert to_401[1]["at"] - to_401[0]["at"] >= 0.9  # the chat waited the retry_after Telegram asked for
    assert texts_to(calls, 402) == ["other chat"]
    assert await tg.topic(tg.settings.topics.dlq) == []


async def test_a_user_who_blocked_the_bot_is_dead_lettered_reported_failed_and_opted_out(tg: Telegram) -> None:
    await tg.http.post("/_fake/fail", json={"error": 403, "chat_id": 501})
    doomed = reply(501, "hello?")
    await tg.produce([doomed, reply(502, "still here")])
    calls = await tg.settled()
    assert texts_to(calls, 502) == ["still here"] and texts_to(calls, 501) == []
    (dead,) = await aread_topic(tg.settings, tg.settings.topics.dlq, 1)
    info = read_dlq_headers(dead.headers())
    assert info is not None and info.origin == "gateway-telegram" and "blocked" in info.error_text
    (status,) = await tg.topic(tg.settings.topics.inbound)
    assert status.status == "failed" and status.reply_to_id == doomed.id and status.error is not None
    assert status.error.code == 403
    assert tg.opted_out == [(f"telegram:{BOT}:501", {"opted_out": True})]


async def test_a_button_press_is_queued_then_answered(tg: Telegram) -> None:
    await tg.produce([reply(601, "pick one")])
    await tg.settled()  # the fake holds the bot's last message to the chat: the one with the button
    answer = (await tg.http.post("/_fake/say", json={"chat_id": 601, "button": "yes"})).json()
    assert answer["status"] == 200
    answered = [c for c in tg.fake.state.calls if c["method"] == "answerCallbackQuery"]
    assert [c["status"] for c in answered] == [200]  # before the webhook's 200, after the broker's ack
    (press,) = await tg.topic(tg.settings.topics.inbound)
    assert press.kind == "interactive" and press.interactive_reply is not None
    assert press.interactive_reply.id == "yes"


async def test_typing_is_refreshed_until_the_reply_goes_and_not_after(tg: Telegram) -> None:
    slow, other = (BeaconMessage.inbound_text(channel="telegram", account=BOT, user_id=str(chat), text="hm?",
                                              channel_message_id=f"{chat}:1") for chat in (501, 502))
    await tg.produce([typing_receipt(slow)])
    # Telegram shows `typing` for 5 s: sent again (every 0.3 s here) while the turn runs.
    await wait_calls(tg, lambda calls: typing_to(calls, 501) >= 3, "typing to chat 501 sent three times")

    await tg.produce([slow.reply_text("the answer")])
    await wait_calls(tg, lambda calls: texts_to(calls, 501) == ["the answer"], "the reply to chat 501")
    after_reply = typing_to(list(tg.fake.state.calls), 501)
    # The same refresher keeps chat 502 typing: three refreshes of it later, 501's would have fired too.
    await tg.produce([typing_receipt(other)])
    await wait_calls(tg, lambda calls: typing_to(calls, 502) >= 4, "typing to chat 502 sent four times")

    calls = list(tg.fake.state.calls)
    assert typing_to(calls, 501) == after_reply
    to_501 = [c["method"] for c in calls if c["chat_id"] == 501]
    assert to_501[-1] == "sendMessage" and set(to_501[:-1]) == {"sendChatAction"}
    await tg.produce([other.reply_text("done")])
    await tg.settled()


@pytest.mark.parametrize(("env", "says"), [
    ({}, "BEACON_TELEGRAM_BOT_TOKEN"),
    ({"BEACON_ENV": "production", "BEACON_API_TOKEN": "a-real-service-token-0123456789",
      "BEACON_TELEGRAM_BOT_TOKEN": "7000001:real-looking-token"}, "BEACON_TELEGRAM_WEBHOOK_SECRET"),
], ids=["no-bot-token", "production-without-a-webhook-secret"])
def test_beacon_gateway_telegram_refuses_to_start_without_what_it_needs(
    kafka_settings: Settings, tmp_path: Path, env: dict[str, str], says: str
) -> None:
    base = {k: v for k, v in os.environ.items() if not k.startswith("BEACON_")}
    base.update({"BEACON_KAFKA_BOOTSTRAP": kafka_settings.kafka.bootstrap, "BEACON_DATA_DIR": str(tmp_path),
                 "BEACON_TELEGRAM_PORT": str(free_port()), **env})
    done = subprocess.run([sys.executable, "-m", "beacon", "gateway", "telegram"], env=base, cwd=tmp_path,
                          capture_output=True, timeout=60)
    assert done.returncode != 0 and says.encode() in done.stderr, done.stderr
