"""The external pipeline hook over real HTTP: replies, passing on, and each failure answered with the status that
tells the worker what to do (wait an outage out, dead-letter at once, retry then dead-letter)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
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

from beacon.ops.process import free_port
from tests.api.conftest import ApiServer, as_json, inbound, process

HOOK_TOKEN = "hook-secret"


async def hook(request: Request) -> Response:
    if request.headers.get("authorization") != f"Bearer {HOOK_TOKEN}":
        return JSONResponse({"error": "unauthorized"}, status_code=401)
    message: dict[str, Any] = (await request.json())["message"]
    text = message.get("text") or ""
    if text == "pass":
        return Response(status_code=204)
    if text == "broken":
        return JSONResponse({"error": "boom"}, status_code=500)
    if text == "refused":
        return JSONResponse({"error": "cannot answer this one"}, status_code=400)
    if text == "garbled":
        return JSONResponse({"replies": 5})
    return JSONResponse({"replies": [f"hook saw: {text}", {"kind": "image", "media": {"link": "https://x/y.png"}}]})


@pytest.fixture(scope="session")
def hook_url() -> Iterator[str]:
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            Starlette(routes=[Route("/hook", hook, methods=["POST"])]), host="127.0.0.1", port=port, log_level="warning"
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/hook"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="session")
def hook_api(migrated_url: str, api_factory: Callable[..., ApiServer], hook_url: str) -> ApiServer:
    return api_factory(migrated_url, BEACON_HOOK_URL=hook_url, BEACON_HOOK_TOKEN=HOOK_TOKEN)


async def test_hook_replies_become_outbound_messages(hook_api: ApiServer) -> None:
    msg = inbound("order status?")
    async with hook_api.client() as client:
        body = (await process(client, msg)).json()
    text, image = body["replies"]
    assert text["text"] == "hook saw: order status?" and text["id"] == msg.reply_text("", index=0).id
    assert image["kind"] == "image" and image["media"]["link"] == "https://x/y.png"
    assert image["reply_to_id"] == msg.id and image["user_key"] == msg.user_key and image["direction"] == "outbound"


async def test_hook_can_pass_to_the_fallback_and_commands_come_first(hook_api: ApiServer) -> None:
    async with hook_api.client() as client:
        assert (await process(client, inbound("pass"))).json()["replies"][0]["text"] == "You said: pass"
        assert (await process(client, inbound("/ping"))).json()["replies"][0]["text"] == "pong"


async def test_hook_failure_is_a_503_and_nothing_is_stored(hook_api: ApiServer) -> None:
    msg = inbound("broken")
    async with hook_api.client() as client:
        resp = await process(client, msg)
        assert resp.status_code == 503 and "HTTP 500" in resp.json()["detail"]
        assert (await client.get(f"/v1/users/{msg.user_key}")).status_code == 404


async def test_a_hook_refusing_the_message_is_a_422_and_a_garbled_answer_a_500_without_retry_after(
    hook_api: ApiServer,
) -> None:
    """Permanent failures of one message are not 503s: the worker would take them for an API outage and hold
    the message (and its user's later ones) forever. 422 is dead-lettered at once, 500 after a few retries."""
    refused, garbled, broken = inbound("refused"), inbound("garbled"), inbound("broken")
    async with hook_api.client() as client:
        resp = await process(client, refused)
        assert resp.status_code == 422 and "refused by the external pipeline" in resp.json()["detail"]
        assert "HTTP 400" in resp.json()["detail"] and refused.id in resp.json()["detail"]
        resp = await process(client, garbled)
        assert resp.status_code == 500 and "HookError" in resp.json()["detail"]
        assert "retry-after" not in resp.headers
        batch = await client.post("/v1/messages/process-batch",
                                  json={"messages": [as_json(m) for m in (refused, garbled, broken)]})
        lines = {item["index"]: item for item in map(json.loads, batch.text.splitlines())}
        assert [lines[i]["status"] for i in range(3)] == [422, 500, 503]
        for msg in (refused, garbled):
            assert (await client.get(f"/v1/users/{msg.user_key}")).status_code == 404
    assert "answered 500: the worker retries it, then dead-letters it" in hook_api.log()


async def test_the_pipeline_comes_from_settings(migrated_url: str, api_factory: Callable[..., ApiServer]) -> None:
    commands_only = api_factory(migrated_url, BEACON_API_PIPELINE='["commands"]')
    msg = inbound("nobody answers this")
    async with commands_only.client() as client:
        assert (await process(client, msg)).json()["replies"] == []
        assert (await process(client, inbound("/ping"))).json()["replies"][0]["text"] == "pong"
        assert (await process(client, msg)).json()["duplicate"] is True


def test_an_unknown_handler_stops_the_start_with_its_name(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BEACON_")}
    env.update({"BEACON_DATA_DIR": str(tmp_path), "BEACON_API_PIPELINE": '["commands", "magic"]'})
    done = subprocess.run(
        [sys.executable, "-m", "beacon", "api"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2 and "unknown handler 'magic' in BEACON_API_PIPELINE" in done.stderr
