"""The processing endpoints' short way through the app: a well-formed ``POST /v1/messages/process`` or
``/process-batch`` (every worker call) is served straight from ASGI, after the Guard, without FastAPI's
routing, dependency solving and exception-handling layers, which cost more CPU than the processing itself
(about half of the API's CPU per message at 100 messages/s, py-spy). Anything else (a body that does not
parse or validate, another content type, a wrong ``Idempotency-Key``) goes on to the FastAPI routes,
which answer it as they always did; errors raised while processing are answered by the app's own
exception handlers. So the answers are the routes' answers, byte for byte."""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

import orjson
from fastapi import FastAPI, HTTPException
from pydantic import TypeAdapter, ValidationError
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from beacon.api.deps import ApiState
from beacon.api.failures import Rejected
from beacon.api.routers.process import BATCH_PATH, NDJSON, PROCESS_PATH, Timing, batch_line, traced
from beacon.api.schemas import BatchRequest
from beacon.groups import MessageGroup
from beacon.messages import BeaconMessage
from beacon.trace import server_timing

#: The body of ``/v1/messages/process``, validated as the route declares it.
ONE = TypeAdapter(BeaconMessage | MessageGroup)
JSON_HEADERS = [(b"content-type", b"application/json")]
NDJSON_HEADERS = [(b"content-type", NDJSON.encode())]


class ProcessShortcut:
    """Serves well-formed processing requests directly; passes every other request to ``app`` unchanged
    (a body it read is handed on as it came)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path")
        if scope["type"] != "http" or scope["method"] != "POST" or path not in (PROCESS_PATH, BATCH_PATH):
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        if len(headers) != len(scope["headers"]) or not _json_content(headers.get(b"content-type")):
            await self.app(scope, receive, send)  # repeated headers or not JSON: the route decides
            return
        body = await _read_body(receive)
        if body is None:
            return  # the client went away
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            data = None
        served = data is not None and (
            await self._one(scope, receive, send, data, headers) if path == PROCESS_PATH
            else await self._batch(scope, send, data)
        )
        if not served:
            await self.app(scope, _replay(body, receive), send)

    async def _one(self, scope: Scope, receive: Receive, send: Send, data: Any, headers: dict[bytes, bytes]) -> bool:
        try:
            msg = ONE.validate_python(data)
        except ValidationError:
            return False
        key = headers.get(b"idempotency-key")
        if key is not None and key.decode("latin-1") != msg.id:
            return False
        state: ApiState = scope["app"].state.beacon
        parent = headers.get(b"traceparent")
        timing: Timing = {}
        try:
            body = await traced(state, msg, timing, None if parent is None else parent.decode("latin-1"))
        except Exception as exc:  # answered by the app's handler for it, as the route's error would be
            error = HTTPException(exc.status_code, detail=exc.detail) if isinstance(exc, Rejected) else exc
            await _handle(scope, receive, send, error)
            return True
        timing_header = (b"server-timing", server_timing(list(timing.items())).encode("latin-1"))
        await send({"type": "http.response.start", "status": 200, "headers": [
            timing_header, (b"content-length", str(len(body)).encode()), *JSON_HEADERS]})
        await send({"type": "http.response.body", "body": body})
        return True

    async def _batch(self, scope: Scope, send: Send, data: Any) -> bool:
        try:
            batch = BatchRequest.model_validate(data)
        except ValidationError:
            return False
        state: ApiState = scope["app"].state.beacon
        parents = batch.traceparents or []
        ready: list[bytes] = []
        woken = asyncio.Event()

        def finished(task: asyncio.Task[bytes], index: int) -> None:
            if task.cancelled() or task.exception() is not None:
                ready.append(b'{"index":%d,"status":500,"detail":"internal error"}\n' % index)
            else:
                ready.append(task.result())
            woken.set()

        tasks = [asyncio.ensure_future(batch_line(state, i, raw, parents)) for i, raw in enumerate(batch.messages)]
        for index, task in enumerate(tasks):
            task.add_done_callback(lambda done, index=index: finished(done, index))  # type: ignore[misc]
        await send({"type": "http.response.start", "status": 200, "headers": NDJSON_HEADERS})
        left = len(tasks)
        while left:
            await woken.wait()
            woken.clear()
            # Every line done by now in one chunk: one send for many lines under load, at once when light.
            lines, count = b"".join(ready), len(ready)
            del ready[:count]
            left -= count
            await send({"type": "http.response.body", "body": lines, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        return True


def _json_content(value: bytes | None) -> bool:
    """What the routes parse as JSON: no Content-Type, or ``application/json`` (parameters aside)."""
    return value is None or value.split(b";", 1)[0].strip().lower() == b"application/json"


async def _read_body(receive: Receive) -> bytes | None:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """``receive`` for the routes: the body already read, then whatever the client sends next."""
    pending = True

    async def replayed() -> Message:
        nonlocal pending
        if pending:
            pending = False
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed


async def _handle(scope: Scope, receive: Receive, send: Send, exc: Exception) -> None:
    """Answer ``exc`` with the app's exception handler for it (by class, most specific first); raise it on
    when there is none (the server answers 500, as for the routes)."""
    app: FastAPI = scope["app"]
    for cls in type(exc).__mro__:
        handler = app.exception_handlers.get(cls)
        if handler is not None:
            answer = handler(Request(scope, receive), exc)
            response = await answer if inspect.isawaitable(answer) else answer
            await response(scope, receive, send)
            return
    raise exc
