"""A local fake of an OpenAI-compatible chat-completions endpoint, served over real HTTP.

It answers like the real API (response, tool-call and error shapes, bearer-key check, request
validation incl. tool messages answering an earlier tool call) with deterministic behaviour the
last user message selects:

- ``!tool NAME {json args}``: asks to call tool NAME (if offered in ``tools``) with those arguments;
- after tool results: ``Tool results: <content>; <content>``;
- ``!fail``: a 500 server error; ``!slow SECONDS``: answers after that delay;
- anything else: ``Echo: <text>``.

Every request body is recorded: ``GET /_fake/requests`` lists them, ``POST /_fake/reset`` clears.
Run it with ``python -m beacon.fakes.openai --port 8095 [--api-key KEY]`` (or ``beacon fake-openai``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


def _error(
    status: int, message: str, type_: str = "invalid_request_error", code: str | None = None, param: str | None = None
) -> JSONResponse:
    return JSONResponse(
        {"error": {"message": message, "type": type_, "param": param, "code": code}}, status_code=status
    )


def _text(content: Any) -> str:
    """Message content as text: a string or a list of content parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return ""


def _validate(body: Any) -> JSONResponse | None:
    if not isinstance(body, dict):
        return _error(400, "We could not parse the JSON body of your request.")
    if not isinstance(body.get("model"), str) or not body["model"]:
        return _error(400, "you must provide a model parameter", param="model")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return _error(400, "[] is too short - 'messages'", param="messages")
    pending: set[str] = set()
    for i, message in enumerate(messages):
        role = message.get("role") if isinstance(message, dict) else None
        if role not in {"system", "developer", "user", "assistant", "tool"}:
            return _error(400, f"Invalid value for 'messages[{i}].role': {role!r}", param=f"messages[{i}].role")
        if role == "assistant":
            pending = {call.get("id") for call in message.get("tool_calls") or []}
        elif role == "tool":
            call_id = message.get("tool_call_id")
            if call_id not in pending:
                return _error(
                    400,
                    "Invalid parameter: messages with role 'tool' must be a response to a preceeding message "
                    "with 'tool_calls'.",
                    param=f"messages[{i}].role",
                )
    if body.get("stream"):
        return _error(400, "this fake does not stream; send stream=false", param="stream")
    for tool in body.get("tools") or []:
        if tool.get("type") != "function" or not tool.get("function", {}).get("name"):
            return _error(400, "Invalid 'tools': each needs type 'function' and a function name", param="tools")
    return None


class FakeOpenAI:
    """The fake's state: the expected key and the recorded requests."""

    def __init__(self, api_key: str | None = None) -> None:
        self.api_key = api_key
        self.requests: list[dict[str, Any]] = []

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/v1/chat/completions", self.chat_completions, methods=["POST"]),
                Route("/v1/models", self.models, methods=["GET"]),
                Route("/_fake/requests", self.list_requests, methods=["GET"]),
                Route("/_fake/reset", self.reset, methods=["POST"]),
                Route("/healthz", self.healthz, methods=["GET"]),
            ]
        )

    def _authorized(self, request: Request) -> bool:
        if self.api_key is None:
            return True
        return request.headers.get("authorization", "") == f"Bearer {self.api_key}"

    async def healthz(self, request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def models(self, request: Request) -> JSONResponse:
        return JSONResponse({"object": "list", "data": [{"id": "fake-model", "object": "model", "owned_by": "beacon"}]})

    async def list_requests(self, request: Request) -> JSONResponse:
        return JSONResponse(self.requests)

    async def reset(self, request: Request) -> JSONResponse:
        self.requests.clear()
        return JSONResponse({"status": "ok"})

    async def chat_completions(self, request: Request) -> JSONResponse:
        if not self._authorized(request):
            return _error(401, "Incorrect API key provided.", code="invalid_api_key")
        try:
            body = json.loads(await request.body())
        except ValueError:
            return _error(400, "We could not parse the JSON body of your request.")
        problem = _validate(body)
        if problem is not None:
            return problem
        self.requests.append(body)
        messages = body["messages"]
        last = messages[-1]
        if last["role"] == "tool":
            results = []
            for message in reversed(messages):
                if message["role"] != "tool":
                    break
                results.append(_text(message.get("content")))
            return self._answer(body, content="Tool results: " + "; ".join(reversed(results)))
        text = _text(last.get("content")).strip()
        if text.startswith("!fail"):
            return _error(500, "The server had an error while processing your request.", type_="server_error")
        if text.startswith("!slow"):
            parts = text.split()
            await asyncio.sleep(float(parts[1]) if len(parts) > 1 else 5.0)
            return self._answer(body, content="Sorry for the wait.")
        if text.startswith("!tool"):
            _, _, rest = text.partition(" ")
            name, _, args = rest.strip().partition(" ")
            offered = {t["function"]["name"] for t in body.get("tools") or []}
            if name not in offered:
                return self._answer(body, content=f"I have no tool named {name}.")
            call = {
                "id": f"call_{uuid.uuid4().hex[:24]}",
                "type": "function",
                "function": {"name": name, "arguments": args.strip() or "{}"},
            }
            return self._answer(body, tool_calls=[call])
        return self._answer(body, content=f"Echo: {text}")

    def _answer(
        self, body: dict[str, Any], *, content: str | None = None, tool_calls: list[dict[str, Any]] | None = None
    ) -> JSONResponse:
        message: dict[str, Any] = {"role": "assistant", "content": content, "refusal": None}
        if tool_calls:
            message["tool_calls"] = tool_calls
        prompt_tokens = sum(len(_text(m.get("content")).split()) for m in body["messages"])
        completion_tokens = len((content or "").split()) + 10 * len(tool_calls or [])
        return JSONResponse(
            {
                "id": f"chatcmpl-{uuid.uuid4().hex}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body["model"],
                "choices": [
                    {
                        "index": 0,
                        "message": message,
                        "logprobs": None,
                        "finish_reason": "tool_calls" if tool_calls else "stop",
                    }
                ],
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": completion_tokens,
                    "total_tokens": prompt_tokens + completion_tokens,
                },
                "system_fingerprint": "fp_beacon_fake",
            }
        )


def serve(host: str = "127.0.0.1", port: int = 8095, api_key: str | None = None) -> None:
    import uvicorn

    uvicorn.run(FakeOpenAI(api_key).app(), host=host, port=port, log_level="warning")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="A local fake OpenAI-compatible chat-completions server.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8095)
    parser.add_argument("--api-key", default=None, help="Require this bearer key (default: accept any).")
    args = parser.parse_args(argv)
    serve(args.host, args.port, args.api_key)


if __name__ == "__main__":
    main()
