"""A real worker against a real ``beacon api`` whose pipeline fails on some messages: a message the pipeline
refuses (422) is dead-lettered at once, one it fails on (500) after the worker's retries, and the user's
later messages are answered. Before, the API answered both 503, which the worker waited out forever."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from beacon.codec import MessageCodec
from beacon.messages import BeaconMessage
from beacon.ops.process import free_port
from tests.api.conftest import TOKEN, start_server, stop_server
from tests.streams.harness import Collector, Topics, Worker, all_committed, produce, wait_until
from tests.streams.test_failures import FAST_RETRIES, text


async def hook(request: Request) -> Response:
    body = (await request.json())["message"].get("text") or ""
    if body.startswith("refused"):
        return JSONResponse({"error": "not for this hook"}, status_code=422)
    if body.startswith("garbled"):
        return JSONResponse({"replies": 5})
    return JSONResponse({"replies": [f"hook saw: {body}"]})


@pytest.fixture
def hook_url() -> Iterator[str]:
    port = free_port()
    app = Starlette(routes=[Route("/hook", hook, methods=["POST"])])
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/hook"
    server.should_exit = True
    thread.join(timeout=10)


def test_a_message_the_api_refuses_or_fails_on_is_dead_lettered_and_its_user_goes_on(
    topics: Topics, codec: MessageCodec, start_worker: Callable[..., Worker], replies: Collector,
    dead_letters: Collector, hook_url: str, tmp_path: Path,
) -> None:
    api = start_server(f"sqlite+aiosqlite:///{tmp_path / 'api.db'}", tmp_path, BEACON_HOOK_URL=hook_url,
                       BEACON_DB_AUTO_MIGRATE="true")
    try:
        worker = start_worker(api.base_url, api_token=TOKEN, **FAST_RETRIES)
        messages: list[BeaconMessage] = [text("u", 0, "refused one"), text("u", 1, "garbled two"),
                                         text("u", 2, "after both")]
        produce(topics.settings, messages, codec)

        got = replies.wait_replies(1, timeout=60, workers=[worker])
        dead_letters.wait_dead(2, timeout=30)
        assert [r.text for r in got] == ["hook saw: after both"]
        attempts: dict[str, Any] = {}
        for _, _, info in dead_letters.dead:
            assert info is not None and info.error_class == "ApiError"
            attempts["422" if "422" in info.error_text else "500"] = info.attempts
        assert attempts == {"422": 1, "500": 3}, dead_letters.dead
        wait_until(lambda: all_committed(topics.settings, topics.group), 30, "every message settled and committed")
        assert worker.metric('beacon_worker_dependency_outages_total{dependency="api"}') == 0
    finally:
        stop_server(api)
