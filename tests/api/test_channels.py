"""A channel-aware API: commands and the fallback serve a Telegram user as they serve a WhatsApp one, the
24-hour customer-service window applies to WhatsApp users only, and the operator endpoints take any user
key (a Telegram group's negative chat id included)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import timedelta

import pytest
from sqlalchemy import update

from beacon.api.db import make_engine
from beacon.api.models import User
from beacon.config import Settings
from beacon.messages import BeaconMessage, utcnow
from tests.api.conftest import ApiServer, inbound, process
from tests.conftest import make_settings

BOT = "7000001"


def telegram(text: str, *, chat: str | None = None, **extra: object) -> BeaconMessage:
    """An inbound Telegram text in a chat no other test uses (a group: negative chat id)."""
    return BeaconMessage.inbound_text(
        channel="telegram", account=BOT, user_id=chat or f"-100{uuid.uuid4().int % 10**10:010d}", text=text,
        channel_message_id=uuid.uuid4().hex, **extra,
    )


@pytest.fixture
def two_channel_api(
    migrated_url: str, api_factory: Callable[..., ApiServer], registry_settings: Settings,
    new_topic: Callable[..., str],
) -> ApiServer:
    return api_factory(
        migrated_url,
        BEACON_TOPIC_OUT=new_topic(partitions=1, prefix="bm_out"),
        BEACON_KAFKA_BOOTSTRAP=registry_settings.kafka.bootstrap,
        BEACON_SCHEMA_REGISTRY_URL=registry_settings.registry.url,
        BEACON_SERVED_CHANNELS='["whatsapp", "telegram"]',
    )


async def test_a_telegram_user_is_answered_by_the_commands_and_the_fallback(api: ApiServer) -> None:
    ping = telegram("/ping")
    async with api.client() as client:
        pong = (await process(client, ping)).json()
        said = (await process(client, telegram("hello", chat=ping.user_id))).json()
        # in a Telegram group a command names the bot it is for
        named = (await process(client, telegram("/ping@beacon_bot", chat=ping.user_id))).json()
        user = (await client.get(f"/v1/users/{ping.user_key}")).json()
        page = (await client.get(f"/v1/users/{ping.user_key}/messages")).json()
    assert [r["text"] for r in pong["replies"]] == ["pong"]
    assert pong["replies"][0]["user_key"] == f"telegram:{BOT}:{ping.user_id}"
    assert [r["text"] for r in said["replies"]] == ["You said: hello"]
    assert [r["text"] for r in named["replies"]] == ["pong"]
    assert user["channel"] == "telegram" and user["user_id"] == ping.user_id and user["window_open"] is True
    assert [m["message"]["text"] for m in page["messages"]] == ["pong", "/ping@beacon_bot", "You said: hello", "hello",
                                                                "pong", "/ping"]


async def test_no_window_refusal_for_a_telegram_user_who_wrote_25_hours_ago(api: ApiServer) -> None:
    day_ago = utcnow() - timedelta(hours=25)
    async with api.client() as client:
        tg = (await process(client, telegram("still there?", channel_timestamp=day_ago))).json()
        wa = (await process(client, inbound("still there?", channel_timestamp=day_ago))).json()
    assert [r["text"] for r in tg["replies"]] == ["You said: still there?"] and tg["refused"] == []
    assert wa["replies"] == [] and "customer-service window" in wa["refused"][0]["reason"]


async def test_a_free_form_send_reaches_a_telegram_user_but_not_a_whatsapp_user_outside_the_window(
    two_channel_api: ApiServer,
) -> None:
    tg, wa = telegram("hi"), inbound("hi")
    async with two_channel_api.client() as client:
        for msg in (tg, wa):
            assert (await process(client, msg)).status_code == 200
        engine = make_engine(make_settings(), two_channel_api.database_url)
        try:  # both last wrote 25 hours ago
            async with engine.begin() as conn:
                await conn.execute(update(User).where(User.user_key.in_([tg.user_key, wa.user_key]))
                                   .values(last_inbound_at=utcnow() - timedelta(hours=25)))
        finally:
            await engine.dispose()
        to_tg = await client.post("/v1/messages/send", json={
            "channel": "telegram", "account": BOT, "user_id": tg.user_id, "text": "Your order shipped"})
        to_wa = await client.post("/v1/messages/send", json={
            "account": wa.account, "user_id": wa.user_id, "text": "Your order shipped"})
        template = await client.post("/v1/messages/send", json={
            "channel": "telegram", "account": BOT, "user_id": tg.user_id, "kind": "template", "payload": "{}"})
        tg_user = (await client.get(f"/v1/users/{tg.user_key}")).json()
        wa_user = (await client.get(f"/v1/users/{wa.user_key}")).json()
        tg_page = (await client.get(f"/v1/users/{tg.user_key}/messages", params={"limit": 1})).json()
    assert to_tg.status_code == 202, to_tg.text
    assert to_tg.json()["message"]["user_key"] == tg.user_key and to_tg.json()["message"]["kind"] == "text"
    assert to_wa.status_code == 409 and "WhatsApp's 24-hour customer-service window" in to_wa.json()["detail"]
    assert template.status_code == 422 and "WhatsApp template" in template.json()["detail"]
    assert tg_user["window_open"] is True and wa_user["window_open"] is False
    assert tg_page["messages"][0]["message"]["text"] == "Your order shipped"
