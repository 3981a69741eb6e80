"""Operator endpoints: user lookup, paged history, proactive sends produced to a real bm_out, and the
template that replaces free-form replies outside the 24-hour window."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta, timezone

import pytest

from beacon.codec import MessageCodec
from beacon.config import Settings
from beacon.kafka import make_consumer
from beacon.messages import BeaconMessage, utcnow
from beacon.routing import channel_of
from tests.api.conftest import ApiServer, inbound, process

TEMPLATE = json.dumps({"name": "hello_again", "language": {"code": "en"}})


@pytest.fixture
def kafka_api(
    migrated_url: str,
    api_factory: Callable[..., ApiServer],
    registry_settings: Settings,
    new_topic: Callable[..., str],
) -> tuple[ApiServer, str]:
    topic = new_topic(partitions=3, prefix="bm_out")
    server = api_factory(
        migrated_url,
        BEACON_TOPIC_OUT=topic,
        BEACON_KAFKA_BOOTSTRAP=registry_settings.kafka.bootstrap,
        BEACON_SCHEMA_REGISTRY_URL=registry_settings.registry.url,
    )
    return server, topic


def consume_one(settings: Settings, topic: str) -> tuple[bytes | None, BeaconMessage, str | None]:
    """The first record of ``topic``: its key, its message and the channel its header names."""
    consumer = make_consumer(settings, f"api-test-{topic}", **{"auto.offset.reset": "earliest"})
    codec = MessageCodec(settings)
    try:
        consumer.subscribe([topic])
        for _ in range(60):
            record = consumer.poll(1.0)
            if record is not None and record.error() is None:
                return record.key(), codec.decode(record.value(), topic=topic), channel_of(record.headers())
    finally:
        consumer.close()
        codec.client.close()
    raise AssertionError(f"nothing arrived on {topic}")


async def test_user_lookup_and_paged_history(api: ApiServer) -> None:
    first = inbound("one")
    async with api.client() as client:
        for n, text in enumerate(["one", "two", "three"]):
            msg = first if n == 0 else inbound(text, user=first.user_id)
            assert (await process(client, msg)).status_code == 200
        user = (await client.get(f"/v1/users/{first.user_key}")).json()
        assert user["profile_name"] == "Test User" and user["window_open"] is True
        assert user["user_id"] == first.user_id and user["opted_out"] is False
        texts: list[str] = []
        params: dict[str, str | int] = {"limit": 4}
        while True:
            page = (await client.get(f"/v1/users/{first.user_key}/messages", params=params)).json()
            texts += [m["message"]["text"] for m in page["messages"]]
            if page["next_before"] is None:
                break
            params = {"limit": 4, "before": page["next_before"]}
        assert (await client.get("/v1/users/whatsapp:1:nobody")).status_code == 404
    assert texts == ["You said: three", "three", "You said: two", "two", "You said: one", "one"]


async def test_proactive_send_is_produced_to_bm_out(
    kafka_api: tuple[ApiServer, str], registry_settings: Settings
) -> None:
    server, topic = kafka_api
    msg = inbound("hi")
    async with server.client() as client:
        await process(client, msg)
        resp = await client.post(
            "/v1/messages/send",
            json={"account": msg.account, "user_id": msg.user_id, "text": "Your order shipped", "id": "order-1-x"},
        )
        assert resp.status_code == 202, resp.text
        assert resp.json()["topic"] == topic
        page = (await client.get(f"/v1/users/{msg.user_key}/messages")).json()
    key, sent, channel = consume_one(registry_settings, topic)
    assert key == msg.user_key.encode() and channel == "whatsapp"  # the other channels' gateways skip it undecoded
    assert (sent.id, sent.text, sent.direction, sent.user_key) == (
        "order-1-x",
        "Your order shipped",
        "outbound",
        msg.user_key,
    )
    assert page["messages"][0]["message"]["id"] == "order-1-x"


async def test_proactive_send_is_validated_and_respects_the_window(kafka_api: tuple[ApiServer, str]) -> None:
    server, _ = kafka_api
    async with server.client() as client:
        resp = await client.post("/v1/messages/send", json={"account": "1", "user_id": "2", "kind": "text"})
        assert resp.status_code == 422 and "needs `text`" in resp.json()["detail"]
        resp = await client.post(
            "/v1/messages/send", json={"account": "1", "user_id": "2", "kind": "template", "payload": "{"}
        )
        assert resp.status_code == 422 and "not JSON" in resp.json()["detail"]
        msg = inbound("opting out")
        await process(client, msg)
        assert (await client.put(f"/v1/users/{msg.user_key}/opt-out", json={"opted_out": True})).json()["opted_out"]
        resp = await client.post(
            "/v1/messages/send", json={"account": msg.account, "user_id": msg.user_id, "text": "sale!"}
        )
        assert resp.status_code == 409 and "opted out" in resp.json()["detail"]
        resp = await client.post("/v1/messages/send", json={"account": "1", "user_id": "never-wrote", "text": "hi"})
        assert resp.status_code == 409 and "window" in resp.json()["detail"]
        resp = await client.post(
            "/v1/messages/send",
            json={"account": "1", "user_id": "never-wrote", "kind": "template", "payload": TEMPLATE},
        )
        assert resp.status_code == 202, resp.text


async def test_reply_outside_the_window_becomes_the_template(
    migrated_url: str, api_factory: Callable[..., ApiServer]
) -> None:
    server = api_factory(migrated_url, BEACON_WINDOW_TEMPLATE=TEMPLATE)
    old = inbound("from two days ago", channel_timestamp=utcnow() - timedelta(hours=48))
    async with server.client() as client:
        body = (await process(client, old)).json()
    [reply] = body["replies"]
    assert reply["kind"] == "template" and json.loads(reply["payload"])["name"] == "hello_again"
    assert reply["text"] is None and body["refused"] == []


async def test_paging_neither_skips_nor_repeats_messages_sharing_a_time(api: ApiServer) -> None:
    same_time = utcnow() - timedelta(minutes=5)
    first = inbound("m0", created_at=same_time)
    async with api.client() as client:
        for n in range(7):  # one batched webhook: every message has the same created_at
            msg = first if n == 0 else inbound(f"m{n}", user=first.user_id, created_at=same_time)
            assert (await process(client, msg)).status_code == 200
        seen: list[str] = []
        params: dict[str, str | int] = {"limit": 3}
        while True:
            page = (await client.get(f"/v1/users/{first.user_key}/messages", params=params)).json()
            seen += [m["message"]["id"] for m in page["messages"]]
            if page["next_before"] is None:
                break
            params = {"limit": 3, "before": page["next_before"]}
        everything = (await client.get(f"/v1/users/{first.user_key}/messages", params={"limit": 100})).json()
        bad = await client.get(f"/v1/users/{first.user_key}/messages", params={"before": "not-a-cursor"})
    assert len(seen) == 14 and seen == [m["message"]["id"] for m in everything["messages"]]
    assert bad.status_code == 422 and "next_before" in bad.json()["detail"]


async def test_a_before_time_with_an_offset_means_that_instant(api: ApiServer) -> None:
    an_hour_ago = utcnow() - timedelta(hours=1)
    msg = inbound("an hour ago", created_at=an_hour_ago)
    async with api.client() as client:
        await process(client, msg)  # its reply is created now
        just_after = (an_hour_ago + timedelta(minutes=1)).astimezone(timezone(timedelta(hours=2)))
        page = (
            await client.get(f"/v1/users/{msg.user_key}/messages", params={"before": just_after.isoformat()})
        ).json()
    assert [m["message"]["text"] for m in page["messages"]] == ["an hour ago"]


async def test_sends_that_would_never_be_delivered_are_refused(kafka_api: tuple[ApiServer, str]) -> None:
    server, _ = kafka_api
    msg = inbound("hello")
    to_user = {"account": msg.account, "user_id": msg.user_id}
    async with server.client() as client:
        await process(client, msg)
        long_id = await client.post("/v1/messages/send", json={**to_user, "text": "hi", "id": "i" * 65})
        no_gateway = await client.post("/v1/messages/send", json={**to_user, "text": "hi", "channel": "telegram"})
        too_long = await client.post("/v1/messages/send", json={**to_user, "text": "x" * 4097})
        first = await client.post("/v1/messages/send", json={**to_user, "text": "Your code is 1234", "id": "otp-1"})
        repeat = await client.post("/v1/messages/send", json={**to_user, "text": "Your code is 1234", "id": "otp-1"})
        reused = await client.post("/v1/messages/send", json={**to_user, "text": "Your code is 9999", "id": "otp-1"})
    assert long_id.status_code == 422 and "id (65 > 64)" in long_id.json()["detail"]
    assert no_gateway.status_code == 422 and "BEACON_SERVED_CHANNELS" in no_gateway.json()["detail"]
    assert too_long.status_code == 422 and "4096" in too_long.json()["detail"]
    assert first.status_code == 202 and repeat.status_code == 202, (first.text, repeat.text)
    assert reused.status_code == 409 and "used before" in reused.json()["detail"]


async def test_users_are_found_by_part_of_their_key_or_of_a_message_text(api: ApiServer) -> None:
    marker = f"zebra-{utcnow().timestamp():.0f}_%"
    first = inbound(f"about the {marker} order")
    other = inbound("nothing to see")
    async with api.client() as client:
        for msg in (first, other):
            assert (await process(client, msg)).status_code == 200
        by_text = (await client.get("/v1/users", params={"q": marker})).json()
        assert [u["user_key"] for u in by_text["users"]] == [first.user_key]
        # `%` and `_` are matched as themselves, not as wildcards.
        assert (await client.get("/v1/users", params={"q": "zebra-%"})).json()["users"] == []
        by_key = (await client.get("/v1/users", params={"q": other.user_id})).json()
        assert [u["user_key"] for u in by_key["users"]] == [other.user_key]
        assert (await client.get("/v1/users", params={"q": ""})).status_code == 422
        assert (await client.get("/v1/users", params={"q": "a\x00b"})).status_code == 422
