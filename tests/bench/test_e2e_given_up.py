"""`beacon bench e2e` tells a gateway that refuses webhooks apart from one that does not answer in time.

On a busy machine the bench's webhooks can wait past their timeout while the gateway accepts every
one it gets; the report must then say the run was overloaded, not send the operator to a gateway
log that holds no refusal. A webhook waiting for one of the load generator's own connections has not
been given to the gateway yet, so it is never given up for that wait; and a run whose gateway fails
webhooks one after another stops at once with the reason, instead of failing every queued one in turn.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from aiohttp import web

from beacon.bench.e2e import GIVE_UP_LIMIT, RunResult, given_up_report, run_stack, summary
from beacon.config import Settings
from beacon.errors import BeaconError
from beacon.fakes.whatsapp.driver import WebhookDeliveryError, WebhookDriver
from beacon.ops.process import free_port


@pytest.fixture
async def refusing_gateway() -> AsyncIterator[str]:
    """A gateway that answers every webhook 503 (as when its broker is down)."""

    async def refuse(_: web.Request) -> web.Response:
        return web.Response(status=503)

    app = web.Application()
    app.router.add_post("/webhooks/whatsapp", refuse)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@pytest.fixture
async def silent_gateway() -> AsyncIterator[str]:
    """A gateway that accepts the connection and reads the request but never answers (starved of CPU)."""
    release = asyncio.Event()

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(65536)
        await release.wait()
        writer.close()

    server = await asyncio.start_server(hold, "127.0.0.1", free_port())
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        release.set()
        server.close()
        await server.wait_closed()


async def give_up_on(gateway_url: str, result: RunResult) -> None:
    async with WebhookDriver(gateway_url, None, max_attempts=1, timeout=0.5) as driver:
        with pytest.raises(WebhookDeliveryError) as caught:
            await driver.send_text("447700900123", "hello")
    result.give_up(caught.value)


async def test_refused_and_unanswered_webhooks_are_counted_and_reported_apart(
    refusing_gateway: str, silent_gateway: str
) -> None:
    low, high = RunResult("stack at 10/s", 10, 1), RunResult("stack at 20/s", 20, 1)
    await give_up_on(refusing_gateway, low)
    await give_up_on(silent_gateway, high)
    await give_up_on(silent_gateway, high)
    assert (low.refused, low.unanswered, high.refused, high.unanswered) == (1, 0, 0, 2)

    report = given_up_report(summary([RunResult("base", 10, 1), low, RunResult("base", 20, 1), high]))
    assert len(report) == 2
    refused, unanswered = report
    assert "the gateway refused 1 of the bench's webhooks" in refused and "gateway's log" in refused
    assert unanswered.startswith("error: 2 of the bench's webhooks got no answer within 10 s")
    assert "overloaded" in unanswered and "gateway's log" not in unanswered


async def test_a_run_the_gateway_answered_reports_nothing_given_up() -> None:
    runs = [RunResult("base", 10, 1), RunResult("stack", 10, 1), RunResult("base", 20, 1), RunResult("stack", 20, 1)]
    assert given_up_report(summary(runs)) == []


@pytest.fixture
async def slow_gateway() -> AsyncIterator[str]:
    """A gateway that accepts every webhook, 0.3 s after it arrives."""

    async def accept(_: web.Request) -> web.Response:
        await asyncio.sleep(0.3)
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/webhooks/whatsapp", accept)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def test_a_webhook_waiting_for_a_free_connection_is_not_given_up(slow_gateway: str) -> None:
    # One connection, four webhooks at once: the last waits 0.9 s for the connection, longer than the
    # 0.5 s an answer may take, and the gateway answers each within 0.3 s of getting it.
    async with WebhookDriver(slow_gateway, None, max_attempts=1, timeout=0.5, connections=1) as driver:
        statuses = await asyncio.gather(*(driver.post({"object": "whatsapp_business_account", "entry": []})
                                          for _ in range(4)))
    assert statuses == [200] * 4


class _RefusedTarget:
    """A run target whose gateway refuses every webhook, beside a fake Cloud API that recorded nothing."""

    def __init__(self, gateway_url: str, fake_url: str) -> None:
        self.settings = Settings()
        self.gateway_url, self.fake_url = gateway_url, fake_url
        self.app_secret: str | None = None
        self.phone_number_id = "123456"

    async def check(self, client: httpx.AsyncClient) -> None:
        return None

    def pids(self) -> dict[str, int]:
        return {}


@pytest.fixture
async def empty_fake() -> AsyncIterator[str]:
    """The fake Cloud API's record of sends, empty."""

    async def stats(_: web.Request) -> web.Response:
        return web.json_response({"last_seq": 0})

    async def sent(_: web.Request) -> web.Response:
        await asyncio.sleep(0.1)
        return web.json_response([])

    app = web.Application()
    app.router.add_get("/_fake/stats", stats)
    app.router.add_get("/_fake/sent", sent)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def test_a_run_stops_with_the_reason_once_the_gateway_has_failed_too_many_webhooks(
    refusing_gateway: str, empty_fake: str
) -> None:
    total = 3 * GIVE_UP_LIMIT
    with pytest.raises(BeaconError) as caught:
        await asyncio.wait_for(run_stack(_RefusedTarget(refusing_gateway, empty_fake), "stack at 300/s",
                                         300, total / 300, users=50), 60)
    text = str(caught.value)
    assert f"failed {GIVE_UP_LIMIT} webhooks" in text and "refused" in text and "gateway's log" in text
