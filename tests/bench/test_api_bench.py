"""`beacon bench api` counts only 2xx answers as throughput and reports the failures apart."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from beacon.bench.api import Run, _drive, failure_report
from beacon.ops.process import free_port


@pytest.fixture
async def half_failing_server() -> AsyncIterator[str]:
    """A server that answers every other request 500 (as a failing database would make the API do)."""
    calls = 0

    async def answer(_: web.Request) -> web.Response:
        nonlocal calls
        calls += 1
        return web.Response(status=500 if calls % 2 else 200)

    app = web.Application()
    app.router.add_get("/healthz", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}/healthz"
    finally:
        await runner.cleanup()


async def test_failed_requests_are_not_throughput_and_are_reported(half_failing_server: str) -> None:
    run = await _drive(half_failing_server, None, 20, 4, None)
    assert (run.requests, run.errors, run.succeeded, len(run.latencies)) == (20, 10, 10, 10)
    assert run.rate == pytest.approx(10 / run.seconds)

    refused = await _drive(f"http://127.0.0.1:{free_port()}/healthz", None, 5, 2, None)  # nothing listens
    assert (refused.errors, refused.rate, refused.latencies) == (5, 0.0, [])

    report = failure_report({"GET /healthz": run, "POST /v1/messages/process": refused,
                             "paced": Run("", 3, 1.0, [0.01] * 3, 0)})
    assert len(report) == 1
    assert "10 of 20 in GET /healthz, 5 of 5 in POST /v1/messages/process;" in report[0]
    assert failure_report({"paced": Run("", 3, 1.0, [0.01] * 3, 0)}) == []
