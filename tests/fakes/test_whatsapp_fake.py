"""The fake Cloud API over real HTTP: send shapes, bearer check, validation, injected errors,
the long-poll record, media, and Meta's side of webhooks (signed, retried)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from aiohttp import web

from beacon.fakes.whatsapp import payloads as p
from beacon.fakes.whatsapp.driver import WebhookDeliveryError, WebhookDriver
from beacon.fakes.whatsapp.server import FakeCloudApi, running
from beacon.gateway.whatsapp.parse import parse_webhook
from beacon.gateway.whatsapp.signature import HEADER, check_signature

TOKEN = "tok"
SECRET = "sec"
PNID = p.DEFAULT_PHONE_NUMBER_ID


@pytest.fixture
async def fake() -> AsyncIterator[tuple[FakeCloudApi, httpx.AsyncClient]]:
    api = FakeCloudApi(access_token=TOKEN, app_secret=SECRET, gateway_url="http://127.0.0.1:9")
    async with running(api) as url, httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}) as c:
        yield api, c


def _text(to: str = "+447700900123", body: str = "hi") -> dict[str, object]:
    return {"messaging_product": "whatsapp", "recipient_type": "individual", "to": to, "type": "text",
            "text": {"body": body}}


async def test_send_answers_like_the_cloud_api_and_is_recorded(fake: tuple[FakeCloudApi, httpx.AsyncClient]) -> None:
    _, c = fake
    r = await c.post(f"/v23.0/{PNID}/messages", json=_text())
    assert r.status_code == 200
    data = r.json()
    assert data["messaging_product"] == "whatsapp" and data["contacts"][0]["wa_id"] == "447700900123"
    assert data["messages"][0]["id"].startswith("wamid.")
    read = await c.post(f"/v23.0/{PNID}/messages", json={"messaging_product": "whatsapp", "status": "read",
                                                         "message_id": "wamid.X", "typing_indicator": {"type": "text"}})
    assert read.json() == {"success": True}
    sent = (await c.get("/_fake/sent", params={"after": 0})).json()
    assert [s["seq"] for s in sent] == [1, 2] and sent[0]["to"] == "+447700900123" and sent[0]["body"]["text"]
    assert sent[0]["phone_number_id"] == PNID and isinstance(sent[0]["received_at"], float)


async def test_wrong_token_gets_190_and_bad_bodies_get_parameter_errors(
    fake: tuple[FakeCloudApi, httpx.AsyncClient],
) -> None:
    _, c = fake
    r = await c.post(f"/v23.0/{PNID}/messages", json=_text(), headers={"Authorization": "Bearer nope"})
    assert r.status_code == 401 and r.json()["error"]["code"] == 190
    r = await c.post(f"/v23.0/{PNID}/messages", json=_text(body="x" * 5000))
    assert r.json()["error"]["code"] == 100 and "fbtrace_id" in r.json()["error"]
    buttons = {"type": "button", "body": {"text": "?"}, "action": {"buttons": [
        {"type": "reply", "reply": {"id": str(i), "title": f"b{i}"}} for i in range(4)]}}
    r = await c.post(f"/v23.0/{PNID}/messages", json={"messaging_product": "whatsapp", "to": "1",
                                                      "type": "interactive", "interactive": buttons})
    assert r.json()["error"]["code"] == 131009
    assert (await c.get("/_fake/sent")).json() == []


async def test_injected_faults_by_recipient_and_count_and_throughput_limit(
    fake: tuple[FakeCloudApi, httpx.AsyncClient],
) -> None:
    _, c = fake
    await c.post("/_fake/faults", json={"code": 131056, "to": "111", "count": 2})
    codes = []
    for to in ["+111", "+222", "+111", "+111"]:
        r = await c.post(f"/v23.0/{PNID}/messages", json=_text(to))
        codes.append(r.json().get("error", {}).get("code"))
    assert codes == [131056, None, 131056, None]
    await c.post("/_fake/config", json={"rate_limit": 3})
    results = [(await c.post(f"/v23.0/{PNID}/messages", json=_text())).json() for _ in range(5)]
    assert sum(1 for r in results if r.get("error", {}).get("code") == 130429) >= 2
    stats = (await c.get("/_fake/stats")).json()
    assert stats["rejected"]["131056"] == 2 and stats["rejected"]["130429"] >= 2


async def test_sent_long_poll_returns_when_a_send_arrives(fake: tuple[FakeCloudApi, httpx.AsyncClient]) -> None:
    _, c = fake
    poll = asyncio.create_task(c.get("/_fake/sent", params={"after": 0, "wait": 20}))
    await asyncio.sleep(0.05)
    await c.post(f"/v23.0/{PNID}/messages", json=_text())
    sent = (await poll).json()
    assert len(sent) == 1


async def test_media_upload_lookup_and_download_with_bearer(fake: tuple[FakeCloudApi, httpx.AsyncClient]) -> None:
    _, c = fake
    up = await c.post(f"/v23.0/{PNID}/media", data={"messaging_product": "whatsapp", "type": "image/png"},
                      files={"file": ("a.png", b"PNGDATA", "image/png")})
    media_id = up.json()["id"]
    info = (await c.get(f"/v23.0/{media_id}")).json()
    assert info["mime_type"] == "image/png" and info["file_size"] == 7
    async with httpx.AsyncClient() as anon:
        assert (await anon.get(info["url"])).status_code == 401
    assert (await c.get(info["url"])).content == b"PNGDATA"


async def test_say_and_driver_post_signed_webhooks_and_retry_non_200() -> None:
    seen: list[bytes] = []
    answers = [503, 200, 200]

    async def hook(request: web.Request) -> web.Response:
        body = await request.read()
        check_signature(body, request.headers.get(HEADER), SECRET)
        seen.append(body)
        return web.Response(status=answers.pop(0) if answers else 200)

    gw = web.Application()
    gw.add_routes([web.post("/webhooks/whatsapp", hook)])
    runner = web.AppRunner(gw)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    gw_url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        api = FakeCloudApi(access_token=TOKEN, app_secret=SECRET, gateway_url=gw_url)
        async with running(api) as url, httpx.AsyncClient(base_url=url) as c:
            r = await c.post("/_fake/say", json={"from": "447700900123", "text": "café ☕", "name": "Ann"})
            assert r.status_code == 200 and r.json()["gateway_status"] == 200
            assert len(seen) == 2 and seen[0] == seen[1] and b"\\u00e9" in seen[0]
            (msg,) = parse_webhook(seen[0])
            assert msg.text == "café ☕" and msg.channel_message_id == r.json()["wamid"]
        async with WebhookDriver(gw_url, SECRET, max_attempts=2, retry_delay=0.01) as driver:
            wamid = await driver.send_text("447700900123", "again")
            assert parse_webhook(seen[-1])[0].channel_message_id == wamid
            answers.extend([500, 500])
            with pytest.raises(WebhookDeliveryError):
                await driver.send_status(wamid, "read", "447700900123")
    finally:
        await runner.cleanup()


async def test_statuses_batches_duplicates_and_shuffles_reach_the_gateway() -> None:
    bodies: list[bytes] = []

    async def hook(request: web.Request) -> web.Response:
        body = await request.read()
        check_signature(body, request.headers.get(HEADER), SECRET)
        bodies.append(body)
        return web.Response(status=200)

    gw = web.Application()
    gw.add_routes([web.post("/webhooks/whatsapp", hook)])
    runner = web.AppRunner(gw)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    gw_url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        api = FakeCloudApi(access_token=TOKEN, app_secret=SECRET, gateway_url=gw_url)
        api.state.statuses = True
        async with running(api) as url, httpx.AsyncClient(base_url=url,
                                                          headers={"Authorization": f"Bearer {TOKEN}"}) as c:
            body = {**_text(), "biz_opaque_callback_data": "beacon-1"}
            wamid = (await c.post(f"/v23.0/{PNID}/messages", json=body)).json()["messages"][0]["id"]
            for _ in range(100):
                if len(bodies) == 3:
                    break
                await asyncio.sleep(0.02)
        statuses = [m for b in bodies for m in parse_webhook(b)]
        assert [s.status for s in statuses] == ["sent", "delivered", "read"]
        assert all(s.channel_message_id == wamid and s.reply_to_id == "beacon-1" for s in statuses)
        bodies.clear()
        values = [p.value(messages=[p.text_message("447700900123", f"m{i}")]) for i in range(10)]
        async with WebhookDriver(gw_url, SECRET) as driver:
            posts = await driver.deliver(values, batch=3, duplicates=1.0, shuffle=True, seed=1)
        assert posts == 8 and len(bodies) == 8
        texts = [m.text or "" for b in bodies for m in parse_webhook(b)]
        assert sorted(set(texts)) == sorted(f"m{i}" for i in range(10)) and len(texts) == 20
    finally:
        await runner.cleanup()


async def test_the_shared_fixture_serves_the_fake(fake_whatsapp: tuple[FakeCloudApi, str]) -> None:
    fake, url = fake_whatsapp
    async with httpx.AsyncClient(base_url=url) as c:
        assert (await c.get("/healthz")).status_code == 200
        r = await c.post(f"/v23.0/{PNID}/messages", json=_text(), headers={"Authorization": "Bearer dev-access-token"})
        assert r.status_code == 200 and fake.state.accepted == 1


async def test_an_outage_answers_503_500_or_nothing_for_its_number_and_records_no_send(
    fake: tuple[FakeCloudApi, httpx.AsyncClient],
) -> None:
    api, c = fake
    url = f"/v23.0/{PNID}/messages"
    await c.post("/_fake/outage", json={"mode": "503", "phone_number_id": PNID})
    down = await c.post(url, json=_text())
    assert down.status_code == 503 and b"error" not in down.content
    assert (await c.post("/v23.0/other/messages", json=_text())).status_code == 200  # another number is up
    await c.post("/_fake/outage", json={"mode": "500"})
    r = await c.post(url, json=_text())
    assert r.status_code == 500 and r.json()["error"]["code"] == 131000
    await c.post("/_fake/outage", json={"mode": "hang"})
    hung = asyncio.create_task(c.post(url, json=_text()))
    deadline = asyncio.get_running_loop().time() + 10
    while api.state.rejected["outage"] < 3:  # the hung request has reached the fake
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.01)
    assert not hung.done() and api.state.hanging == api.state.hanging_peak == 1
    await c.delete("/_fake/outage")
    assert (await hung).status_code == 503  # answered only once the outage ends
    assert (await c.post(url, json=_text(body="back"))).status_code == 200
    assert [s["body"]["text"]["body"] for s in api.state.sent] == ["hi", "back"]
    assert (await c.post("/_fake/outage", json={"mode": "sideways"})).status_code == 400
