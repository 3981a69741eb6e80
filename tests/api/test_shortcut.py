"""The processing endpoints' short way (``beacon.api.shortcut``): well-formed requests are served without the
FastAPI routes, everything else reaches them unchanged, and a batch's lines that are done together leave in
one chunk. That the answers are the routes' answers is what tests/api/test_contract.py and test_process.py
check, through it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from fastapi import FastAPI
from starlette.types import Message, Receive, Scope, Send

from beacon.api import migrate
from beacon.api.app import create_app
from beacon.api.shortcut import ProcessShortcut
from tests.api.conftest import TOKEN, as_json, inbound
from tests.conftest import make_settings


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[FastAPI]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'shortcut.db'}"
    await migrate.upgrade(make_settings(), url=url)
    app = create_app(make_settings(database_url=url, api_token=TOKEN))
    async with app.router.lifespan_context(app):
        yield app


async def call(
    app: FastAPI, path: str, body: bytes, headers: list[tuple[bytes, bytes]] | None = None, via: Any = None
) -> list[Message]:
    """POST ``body`` to ``app`` over ASGI (or to ``via``, in ``app``'s scope); every message it sends."""
    scope: Scope = {
        "type": "http", "method": "POST", "path": path, "raw_path": path.encode(), "query_string": b"",
        "root_path": "", "scheme": "http", "server": ("api", 80), "client": ("127.0.0.1", 1), "http_version": "1.1",
        "asgi": {"version": "3.0"}, "app": app,
        "headers": [(b"authorization", f"Bearer {TOKEN}".encode()), (b"content-type", b"application/json"),
                    *(headers or [])],
    }
    received = False
    sent: list[Message] = []

    async def receive() -> Message:
        nonlocal received
        if received:
            return {"type": "http.disconnect"}
        received = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    await (via or app)(scope, receive, send)
    return sent


class Routes:
    """Stands in for the FastAPI routes behind the shortcut: records what reaches it, answers 418."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.bodies.append((await receive())["body"])
        await send({"type": "http.response.start", "status": 418, "headers": []})
        await send({"type": "http.response.body", "body": b""})


async def test_well_formed_requests_are_served_without_the_routes_and_the_rest_reach_them(app: FastAPI) -> None:
    routes = Routes()
    shortcut = ProcessShortcut(routes)
    msg = inbound("/ping")

    single = await call(app, "/v1/messages/process", orjson.dumps(as_json(msg)),
                        [(b"idempotency-key", msg.id.encode())], shortcut)
    batch = await call(app, "/v1/messages/process-batch", orjson.dumps({"messages": [as_json(inbound())]}),
                       via=shortcut)
    assert single[0]["status"] == 200 and batch[0]["status"] == 200
    assert orjson.loads(single[1]["body"])["replies"][0]["text"] == "pong"
    assert routes.bodies == []

    # Each of these the routes answer (their 422s), with the body exactly as it came.
    others = [
        ("/v1/messages/process", b'{"id": "not a message"}', []),
        ("/v1/messages/process", b"not json", []),
        ("/v1/messages/process", orjson.dumps(as_json(msg)), [(b"idempotency-key", b"another id")]),
        ("/v1/messages/process-batch", b'{"messages": "none"}', []),
    ]
    for path, body, headers in others:
        assert (await call(app, path, body, headers, shortcut))[0]["status"] == 418
    assert routes.bodies == [body for _, body, _ in others]


async def test_batch_lines_done_together_leave_in_one_chunk_each_message_answered_once(app: FastAPI) -> None:
    messages = [as_json(inbound(f"hello {i}")) for i in range(20)]
    sent = await call(app, "/v1/messages/process-batch", orjson.dumps({"messages": messages}))
    assert sent[0]["status"] == 200
    chunks = [m["body"] for m in sent[1:] if m["body"]]
    lines = [orjson.loads(line) for chunk in chunks for line in chunk.splitlines()]
    assert sorted(line["index"] for line in lines) == list(range(20))
    assert all(line["status"] == 200 for line in lines)
    assert len(chunks) < len(messages)  # one chunk per line before: a send (and a write) for each
    assert sent[-1] == {"type": "http.response.body", "body": b"", "more_body": False}
