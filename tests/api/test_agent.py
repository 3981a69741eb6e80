"""The LLM agent against the local fake OpenAI endpoint over real HTTP: history within a budget,
tool calls (built-in, MCP over stdio, MCP over streamable HTTP), timeouts and the fallback reply."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from beacon.ops.process import free_port
from tests.api.conftest import ApiServer, as_json, inbound, process
from tests.local_http import local_http

MCP_SCRIPT = str(Path(__file__).with_name("mcp_calc.py"))
LLM_KEY = "sk-test-fake"
FALLBACK = "The assistant is unavailable, sorry."


def _wait_http(url: str, proc: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 120  # 30 s was too tight on a heavily loaded machine
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        try:
            local_http.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"{what} not answering at {url} after 120 s")


@pytest.fixture(scope="session")
def fake_llm() -> Iterator[str]:
    """The fake OpenAI-compatible server as its own process; yields its base URL (…/v1)."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "beacon.fakes.openai", "--port", str(port), "--api-key", LLM_KEY])
    try:
        _wait_http(f"http://127.0.0.1:{port}/healthz", proc, "fake OpenAI")
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(scope="session")
def mcp_http() -> Iterator[str]:
    """The small MCP server over streamable HTTP; yields its endpoint."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, MCP_SCRIPT, "http", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        _wait_http(f"http://127.0.0.1:{port}/mcp", proc, "MCP server")
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(scope="session")
def agent_api(migrated_url: str, api_factory: Callable[..., ApiServer], fake_llm: str, mcp_http: str) -> ApiServer:
    servers = [
        {"name": "calc", "command": sys.executable, "args": [MCP_SCRIPT, "stdio"]},
        {"name": "web", "url": mcp_http},
    ]
    return api_factory(
        migrated_url,
        BEACON_LLM_BASE_URL=fake_llm,
        BEACON_LLM_API_KEY=LLM_KEY,
        BEACON_LLM_MODEL="fake-model",
        BEACON_LLM_TIMEOUT="2",
        BEACON_LLM_HISTORY_CHARS="60",
        BEACON_LLM_FALLBACK_REPLY=FALLBACK,
        BEACON_MCP_SERVERS=json.dumps(servers),
    )


async def _llm_requests(fake_llm: str) -> list[dict[str, object]]:
    async with httpx.AsyncClient() as client:
        return (await client.get(fake_llm.removesuffix("/v1") + "/_fake/requests")).json()  # type: ignore[no-any-return]


async def _reply(api: ApiServer, text: str, user: str | None = None) -> str:
    async with api.client() as client:
        resp = await process(client, inbound(text, user=user))
    assert resp.status_code == 200, resp.text
    return resp.json()["replies"][0]["text"]  # type: ignore[no-any-return]


async def test_agent_answers_with_the_history_within_its_budget(agent_api: ApiServer, fake_llm: str) -> None:
    user = inbound().user_id
    assert await _reply(agent_api, "a" * 50, user) == "Echo: " + "a" * 50
    assert await _reply(agent_api, "short one", user) == "Echo: short one"
    assert await _reply(agent_api, "third", user) == "Echo: third"
    last = [r for r in await _llm_requests(fake_llm) if r["messages"][-1]["content"] == "third"][-1]  # type: ignore[index]
    contents = [m["content"] for m in last["messages"]]  # type: ignore[attr-defined]
    assert last["model"] == "fake-model" and last["messages"][0]["role"] == "system"  # type: ignore[index]
    # 60 characters of history: the two newest turns fit, the 50-character first message does not.
    assert contents[1:] == ["short one", "Echo: short one", "third"]
    names = {t["function"]["name"] for t in last["tools"]}  # type: ignore[attr-defined]
    assert {"current_time", "user_profile", "calc__add", "web__shout"} <= names


async def test_agent_calls_builtin_and_mcp_tools(agent_api: ApiServer) -> None:
    assert await _reply(agent_api, '!tool calc__add {"a": 2, "b": 40}') == "Tool results: 42"
    assert await _reply(agent_api, '!tool web__shout {"text": "over http"}') == "Tool results: OVER HTTP"
    assert (await _reply(agent_api, "!tool user_profile")).startswith('Tool results: {"name": "Test User"')
    assert "error: bad arguments" in await _reply(agent_api, "!tool calc__add [1, 2]")


async def test_agent_hands_off_with_its_tool_and_then_stays_silent(agent_api: ApiServer) -> None:
    user = inbound().user_id
    answer = await _reply(agent_api, '!tool handoff_to_human {"reason": "wants a refund"}', user)
    assert answer.startswith("Tool results: Done: the conversation is handed to a person")
    async with agent_api.client() as client:
        key = inbound(user=user).user_key
        found = (await client.get(f"/v1/users/{key}")).json()
        handoff = (found["handoff"], found["handoff_by"], found["handoff_reason"])
        assert handoff == ("waiting", "agent", "wants a refund")
        silent = await process(client, inbound("hello?", user=user))
    assert silent.status_code == 200 and silent.json()["replies"] == []


async def test_agent_falls_back_when_the_llm_fails_or_is_slow(agent_api: ApiServer) -> None:
    assert await _reply(agent_api, "!fail") == FALLBACK
    assert await _reply(agent_api, "!slow 5") == FALLBACK  # BEACON_LLM_TIMEOUT=2


async def test_commands_come_before_the_agent(agent_api: ApiServer) -> None:
    assert await _reply(agent_api, "/ping") == "pong"


async def test_wrong_llm_key_gives_the_fallback(
    migrated_url: str, api_factory: Callable[..., ApiServer], fake_llm: str
) -> None:
    api = api_factory(
        migrated_url, BEACON_LLM_BASE_URL=fake_llm, BEACON_LLM_API_KEY="sk-wrong", BEACON_LLM_FALLBACK_REPLY=FALLBACK
    )
    assert await _reply(api, "hello") == FALLBACK
    assert "HTTP 401" in api.log()


async def test_fake_openai_answers_like_the_real_api(fake_llm: str) -> None:
    url = fake_llm + "/chat/completions"
    auth = {"Authorization": f"Bearer {LLM_KEY}"}
    async with httpx.AsyncClient() as client:
        wrong = await client.post(
            url,
            json={"model": "m", "messages": [{"role": "user", "content": "hi"}]},
            headers={"Authorization": "Bearer nope"},
        )
        assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "invalid_api_key"
        no_model = await client.post(url, json={"messages": [{"role": "user", "content": "hi"}]}, headers=auth)
        assert no_model.status_code == 400 and no_model.json()["error"]["param"] == "model"
        orphan = await client.post(
            url,
            headers=auth,
            json={"model": "m", "messages": [{"role": "tool", "tool_call_id": "call_1", "content": "42"}]},
        )
        assert orphan.status_code == 400 and "tool_calls" in orphan.json()["error"]["message"]
        tools = [{"type": "function", "function": {"name": "add", "parameters": {"type": "object"}}}]
        asked = await client.post(
            url,
            headers=auth,
            json={"model": "m", "tools": tools, "messages": [{"role": "user", "content": '!tool add {"a": 1}'}]},
        )
        body = asked.json()
        assert body["object"] == "chat.completion" and body["choices"][0]["finish_reason"] == "tool_calls"
        [call] = body["choices"][0]["message"]["tool_calls"]
        assert call["type"] == "function" and call["function"] == {"name": "add", "arguments": '{"a": 1}'}
        assert set(body["usage"]) == {"prompt_tokens", "completion_tokens", "total_tokens"}


async def test_a_slow_message_in_a_batch_holds_back_nobody_else(agent_api: ApiServer) -> None:
    """The batch answer streams each result when it is done: a fast message's line comes before a slow one's."""
    slow, fast = inbound("!slow 1.5"), inbound("/ping")  # the fake LLM answers after 1.5 s; /ping never reaches it
    async with agent_api.client() as client, client.stream(
        "POST", "/v1/messages/process-batch", json={"messages": [as_json(slow), as_json(fast)]}
    ) as resp:
        assert resp.status_code == 200
        lines = [json.loads(line) async for line in resp.aiter_lines() if line]
    assert [line["index"] for line in lines] == [1, 0]  # the fast one first, though it was sent second
    assert lines[0]["result"]["replies"][0]["text"] == "pong"
    assert lines[1]["status"] == 200 and lines[1]["result"]["replies"][0]["text"] != FALLBACK
