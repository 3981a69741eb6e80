"""`beacon bench e2e` tells a gateway that refuses webhooks apart from one that does not answer in time.

On a busy machine the bench's webhooks can wait past their timeout while the gateway accepts every
one it gets; the report must then say the run was overloaded, not send the operator to a gateway
log that holds no refusal.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from beacon.bench.e2e import RunResult, given_up_report, summary
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
