"""Webhooks into bm_in through the real gateway app, the real broker and the real registry."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from beacon.codec import MessageCodec
from beacon.config import Settings
from beacon.fakes.whatsapp import payloads as p
from beacon.fakes.whatsapp.driver import WebhookDeliveryError, WebhookDriver
from beacon.gateway.inbound import Inbound
from beacon.gateway.whatsapp.channel import WhatsAppChannel
from beacon.gateway.whatsapp.parse import parse_webhook
from beacon.gateway.whatsapp.signature import HEADER, sign
from beacon.kafka import AsyncProducer
from beacon.messages import BeaconMessage
from beacon.ops.process import free_port
from tests.gateway.conftest import aread_topic, serve

SECRET = "test-secret"


@dataclass
class Gateway:
    settings: Settings
    url: str
    codec: MessageCodec

    def driver(self, **kw: object) -> WebhookDriver:
        return WebhookDriver(self.url, SECRET, **kw)  # type: ignore[arg-type]

    async def records(self, count: int) -> list[tuple[bytes | None, BeaconMessage]]:
        msgs = await aread_topic(self.settings, self.settings.topics.inbound, count)
        return [(m.key(), self.codec.decode(m.value(), topic=self.settings.topics.inbound)) for m in msgs]


@pytest.fixture
async def gateway(registry_settings: Settings, new_topic: Callable[..., str]) -> AsyncIterator[Gateway]:
    settings = registry_settings.replace(
        topic_in=new_topic(4, "bm_in"),
        whatsapp_app_secret=SecretStr(SECRET),
        whatsapp_verify_token=SecretStr("vt"),
        gateway_max_body_bytes=200_000,
    )
    codec = MessageCodec(settings)
    codec.prepare([settings.topics.inbound])
    producer = AsyncProducer(settings)
    try:
        async with serve(Inbound(settings, producer, codec, WhatsAppChannel(settings)).app) as url:
            yield Gateway(settings, url, codec)
    finally:
        producer.close()


def _every_type(user: str) -> dict[str, object]:
    msgs = [p.message(user, t, b) for t, b in p.EXAMPLE_BODIES.items()]
    msgs.append(p.message(user, "interactive", p.LIST_REPLY))
    statuses = [p.status(p.new_wamid(), s, user) for s in ("sent", "delivered", "read", "played")]
    statuses.append(p.status(p.new_wamid(), "failed", user, errors=[{"code": 131026, "title": "Undeliverable"}]))
    return p.envelope([p.value(contacts=[p.contact(user, "Zoë")], messages=msgs, statuses=statuses)])


async def test_every_inbound_type_lands_on_bm_in_keyed_by_user(gateway: Gateway) -> None:
    payload = _every_type("447700900123")
    expected = parse_webhook(p.encode(payload))
    async with gateway.driver(max_attempts=1) as d:
        assert await d.post(payload) == 200
    records = await gateway.records(len(expected))
    assert len(records) == len(expected)
    got = {msg.id: (key, msg) for key, msg in records}
    for want in expected:
        key, msg = got[want.id]
        assert key == want.user_key.encode() == b"whatsapp:106540352242922:447700900123"
        assert msg.model_dump(exclude={"created_at", "trace_id"}) == want.model_dump(exclude={"created_at",
                                                                                              "trace_id"})


async def test_a_batch_of_many_messages_from_many_users_is_produced_entirely(gateway: Gateway) -> None:
    values = [p.value(messages=[p.text_message(f"4477{u:06d}", f"msg {u}-{i}") for i in range(5)]) for u in range(100)]
    async with gateway.driver(max_attempts=1) as d:
        assert await d.post(p.envelope(values)) == 200
    records = await gateway.records(500)
    assert len({m.id for _, m in records}) == 500
    by_user: dict[str, list[str]] = {}
    for _, m in records:
        by_user.setdefault(m.user_id, []).append(m.text or "")
    assert all(texts == [f"msg {u[-6:].lstrip('0') or '0'}-{i}" for i in range(5)] for u, texts in by_user.items())


async def test_signature_missing_wrong_and_right_over_escaped_non_ascii(gateway: Gateway) -> None:
    good = p.encode(p.text_webhook("447700900123", "café 👍 ok"))
    assert b"\\u00e9" in good
    bad = p.encode(p.text_webhook("447700900123", "forged"))
    async with httpx.AsyncClient() as c:
        url = gateway.url + "/webhooks/whatsapp"
        assert (await c.post(url, content=bad)).status_code == 401
        assert (await c.post(url, content=bad, headers={HEADER: sign(bad, "other")})).status_code == 403
        assert (await c.post(url, content=bad, headers={HEADER: "sha256=zz"})).status_code == 403
        assert (await c.post(url, content=good, headers={HEADER: sign(good, SECRET)})).status_code == 200
    records = await gateway.records(1)
    assert [m.text for _, m in records] == ["café 👍 ok"]


async def test_verification_handshake(gateway: Gateway) -> None:
    async with httpx.AsyncClient(base_url=gateway.url) as c:
        ok = await c.get("/webhooks/whatsapp", params={"hub.mode": "subscribe", "hub.verify_token": "vt",
                                                       "hub.challenge": "1158201444"})
        assert ok.status_code == 200 and ok.text == "1158201444"
        bad = await c.get("/webhooks/whatsapp", params={"hub.mode": "subscribe", "hub.verify_token": "no",
                                                        "hub.challenge": "1"})
        assert bad.status_code == 403


async def test_malformed_and_oversized_bodies_are_refused_and_nothing_is_produced(gateway: Gateway) -> None:
    async with gateway.driver(max_attempts=1) as d:
        for body in (b"{not json", b'{"entry": {}}'):
            with pytest.raises(WebhookDeliveryError) as exc:
                await d.post(body)
            assert exc.value.status == 400
        huge = p.text_webhook("447700900123", "x" * 300_000)
        with pytest.raises(WebhookDeliveryError) as exc:
            await d.post(huge)
        assert exc.value.status == 413
        await d.send_text("447700900123", "sentinel")
    records = await gateway.records(1)
    assert [m.text for _, m in records] == ["sentinel"]


async def test_a_duplicate_webhook_gives_one_id(gateway: Gateway) -> None:
    body = p.encode(p.text_webhook("447700900123", "twice"))
    async with gateway.driver(max_attempts=1) as d:
        await d.post(body)
        await d.post(body)
    records = await gateway.records(2)
    assert len(records) == 2 and len({m.id for _, m in records}) == 1


async def test_broker_down_gives_503_and_a_later_retry_loses_nothing(gateway: Gateway) -> None:
    dead = gateway.settings.replace(
        kafka_bootstrap=f"127.0.0.1:{free_port()}",
        gateway_ack_timeout=1.0,
        kafka_request_timeout=1.0,
    )
    producer = AsyncProducer(dead)
    body = p.encode(p.text_webhook("447700900123", "while the broker was down"))
    try:
        async with serve(Inbound(dead, producer, gateway.codec, WhatsAppChannel(dead)).app) as dead_url:
            d = WebhookDriver(dead_url, SECRET, max_attempts=1)
            with pytest.raises(WebhookDeliveryError) as exc:
                await d.post(body)
            await d.aclose()
            assert exc.value.status == 503
    finally:
        producer.close(timeout=0)
    async with gateway.driver(max_attempts=3) as d:  # Meta redelivers; the broker is back
        assert await d.post(body) == 200
    records = await gateway.records(1)
    assert [m.text for _, m in records] == ["while the broker was down"]


async def test_unsigned_webhooks_only_when_explicitly_allowed(
    gateway: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    from beacon.errors import ConfigError
    from beacon.gateway.whatsapp.channel import check_settings

    unsigned = gateway.settings.replace(whatsapp_app_secret=None)
    producer = AsyncProducer(unsigned)
    try:
        with pytest.raises(ConfigError):
            Inbound(unsigned, producer, gateway.codec, WhatsAppChannel(unsigned))
        with pytest.raises(ConfigError):
            check_settings(unsigned)
        allowed = unsigned.replace(whatsapp_allow_unsigned=True)
        check_settings(allowed)
        assert "UNSIGNED WEBHOOKS ACCEPTED" in caplog.text
        async with serve(Inbound(allowed, producer, gateway.codec, WhatsAppChannel(allowed)).app) as url, \
                httpx.AsyncClient() as c:
            body = p.encode(p.text_webhook("447700900123", "no signature"))
            assert (await c.post(url + "/webhooks/whatsapp", content=body)).status_code == 200
    finally:
        producer.close()
    assert [m.text for _, m in await gateway.records(1)] == ["no signature"]


def _deep(levels: int) -> Any:
    deep: Any = "bottom"
    for _ in range(levels):
        deep = {"d": deep}
    return deep


async def test_one_bad_item_never_sinks_a_signed_batch(gateway: Gateway, caplog: pytest.LogCaptureFixture) -> None:
    user = "447700900124"
    no_id, no_from = p.text_message(user, "no id"), p.text_message(user, "no from")
    del no_id["id"], no_from["from"]
    nul_from = p.text_message("4477\x0000", "nul")
    obj_from = {**p.text_message(user, "object"), "from": {"wa_id": user}}
    odd_status = p.status(p.new_wamid(), "failed", user, errors=[{"code": 2**31 + 7, "title": "odd"}])
    value = p.value(contacts=[{"profile": "a string", "wa_id": user}, {"profile": {"name": "B"}, "wa_id": "4477"}],
                    messages=[p.text_message(user, "first"), no_id, no_from, nul_from, obj_from,
                              p.message(user, "hologram", _deep(300)), p.text_message(user, "last")],
                    statuses=[odd_status])
    with caplog.at_level(logging.WARNING, "beacon.gateway.whatsapp.inbound"):
        async with gateway.driver(max_attempts=1) as d:
            assert await d.post(p.envelope([value])) == 200
    records = await gateway.records(4)
    by_kind = {m.kind: m for _, m in records}
    assert [m.text for _, m in records if m.kind == "text"] == ["first", "last"]
    assert by_kind["unsupported"].raw_type == "hologram" and by_kind["status"].error is not None
    assert {k for k, _ in records} == {f"whatsapp:{p.DEFAULT_PHONE_NUMBER_ID}:{user}".encode()}
    assert "4 item(s) dropped" in caplog.text


@pytest.mark.parametrize("limit", [None, 50_000_000], ids=["over-the-gateway-limit", "refused-by-the-broker"])
async def test_an_oversized_text_is_delivered_as_too_large_and_answered_200(
    gateway: Gateway, limit: int | None
) -> None:
    settings = gateway.settings.replace(gateway_max_body_bytes=3 * 1024 * 1024)
    if limit is not None:  # the gateway lets it through: the broker (1 MB) refuses it
        settings = settings.replace(gateway_max_record_bytes=limit)
    producer = AsyncProducer(settings)
    user = "447700900125"
    payload = p.envelope([p.value(messages=[p.text_message(user, "y" * 1_500_000), p.text_message(user, "short")])])
    try:
        async with serve(Inbound(settings, producer, gateway.codec, WhatsAppChannel(settings)).app) as url, \
                WebhookDriver(url, SECRET, max_attempts=1) as d:
            assert await d.post(payload) == 200
    finally:
        producer.close()
    big, short = [m for _, m in await gateway.records(2)]
    assert big.kind == "unsupported" and big.raw_type == "text" and big.text is None
    assert big.error is not None and "too large" in (big.error.message or "") and big.user_id == user
    assert short.text == "short"


async def test_an_overlong_verification_url_is_refused_with_a_short_line_that_keeps_the_token_out(
    gateway: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    token = "vt-" + "s3cr3t" * 2000
    with caplog.at_level(logging.INFO):
        async with httpx.AsyncClient(base_url=gateway.url) as c:
            r = await c.get("/webhooks/whatsapp", params={"hub.mode": "subscribe", "hub.verify_token": token,
                                                          "hub.challenge": "1"})
            assert r.status_code == 400
            ok = await c.get("/webhooks/whatsapp", params={"hub.mode": "x" * 5000, "hub.verify_token": "no"})
            assert ok.status_code == 403
    ours = [r for r in caplog.records if r.name.startswith(("aiohttp", "beacon"))]  # not the test's own client
    assert any("refused a request line or header longer" in r.getMessage() for r in ours)
    assert all("s3cr3t" not in r.getMessage() and len(r.getMessage()) < 300 and r.exc_info is None for r in ours)
