"""The LLM agent handler: conversation history within a budget, tool calls (built-in and MCP),
timeouts, and a clear fallback reply when the LLM fails."""

from __future__ import annotations

import json
import logging
from typing import Any

import httpx

from beacon.api import metrics
from beacon.api.pipeline import Answer, Turn, describe
from beacon.api.tools import BUILTIN_TOOLS, REGISTERED_TOOLS, McpToolbox, Tool
from beacon.config import Settings
from beacon.errors import BeaconError
from beacon.messages import BeaconMessage

log = logging.getLogger(__name__)


class LlmError(BeaconError):
    """The LLM endpoint failed or answered something unusable (turned into the fallback reply); retryable when
    the endpoint was down or busy (5xx, 408, 429)."""


def history_messages(history: list[BeaconMessage], max_chars: int) -> list[dict[str, str]]:
    """Chat messages for the history, newest kept first until the character budget is spent."""
    kept: list[dict[str, str]] = []
    used = 0
    for msg in reversed(history):
        text = describe(msg)
        if used + len(text) > max_chars:
            break
        used += len(text)
        kept.append({"role": "user" if msg.direction == "inbound" else "assistant", "content": text})
    kept.reverse()
    return kept


class AgentHandler:
    """Answers text with an OpenAI-compatible chat-completions endpoint."""

    name = "agent"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.url = settings.llm.base_url.rstrip("/") + "/chat/completions"  # type: ignore[union-attr]
        self.toolbox = McpToolbox(settings)
        self._http: httpx.AsyncClient | None = None

    async def start(self) -> None:
        headers = {}
        if self.settings.llm.api_key is not None:
            headers["Authorization"] = f"Bearer {self.settings.llm.api_key.get_secret_value()}"
        self._http = httpx.AsyncClient(headers=headers, timeout=self.settings.llm.timeout)
        await self.toolbox.start()

    async def close(self) -> None:
        if self._http is not None:
            await self._http.aclose()
        await self.toolbox.close()

    @property
    def tools(self) -> list[Tool]:
        return BUILTIN_TOOLS + REGISTERED_TOOLS + self.toolbox.tools

    async def handle(self, turn: Turn) -> Answer | None:
        msg = turn.message
        if not any(m.kind == "text" or m.interactive_reply is not None for m in turn.messages):
            return None
        s = self.settings
        history = await turn.history(s.llm.history_messages)
        messages: list[dict[str, Any]] = [{"role": "system", "content": s.llm.system_prompt}]
        messages += history_messages(history, s.llm.history_chars)
        # A coalesced turn is one request: the user's rapid messages together, one per line.
        messages.append({"role": "user", "content": "\n".join(describe(m) for m in turn.messages)})
        try:
            return [await self._complete(messages, turn)]
        except (LlmError, httpx.HTTPError) as exc:
            metrics.LLM_CALLS.labels("failed").inc()
            log.error(
                "LLM at %s failed for message %s (sent the fallback reply): %s: %s",
                self.url,
                msg.id,
                type(exc).__name__,
                str(exc) or f"no answer within {s.llm.timeout:g}s",
            )
            return [s.llm.fallback_reply]

    async def _complete(self, messages: list[dict[str, Any]], turn: Turn) -> str:
        assert self._http is not None, "AgentHandler.start() was not called"
        tools = {tool.name: tool for tool in self.tools}
        for _ in range(self.settings.llm.max_tool_rounds + 1):
            body: dict[str, Any] = {"model": self.settings.llm.model, "messages": messages}
            if tools:
                body["tools"] = [tool.spec() for tool in tools.values()]
            resp = await self._http.post(self.url, json=body)
            if resp.status_code != 200:
                raise LlmError(f"HTTP {resp.status_code}: {resp.text[:300]}",
                               retryable=resp.status_code >= 500 or resp.status_code in (408, 429))
            try:
                message = resp.json()["choices"][0]["message"]
            except (ValueError, KeyError, IndexError, TypeError) as exc:
                raise LlmError(f"unexpected response: {resp.text[:300]}") from exc
            metrics.LLM_CALLS.labels("ok").inc()
            calls = message.get("tool_calls") or []
            if not calls:
                content = message.get("content")
                if not content:
                    raise LlmError("empty answer")
                return str(content)
            messages.append({"role": "assistant", "content": message.get("content"), "tool_calls": calls})
            for call in calls:
                messages.append(
                    {"role": "tool", "tool_call_id": call.get("id"), "content": await self._run_tool(call, tools, turn)}
                )
        raise LlmError(f"still calling tools after {self.settings.llm.max_tool_rounds} rounds")

    async def _run_tool(self, call: dict[str, Any], tools: dict[str, Tool], turn: Turn) -> str:
        function = call.get("function") or {}
        name = function.get("name", "")
        tool = tools.get(name)
        if tool is None:
            metrics.TOOL_CALLS.labels(name, "unknown").inc()
            return f"error: no tool named {name}"
        try:
            args = json.loads(function.get("arguments") or "{}")
            if not isinstance(args, dict):
                raise ValueError("arguments must be a JSON object")
        except ValueError as exc:
            metrics.TOOL_CALLS.labels(name, "bad-arguments").inc()
            return f"error: bad arguments for {name}: {exc}"
        try:
            result = await tool.call(args, turn)
        except Exception as exc:  # the LLM sees the failure and can recover; logged for the operator
            metrics.TOOL_CALLS.labels(name, "failed").inc()
            log.warning("tool %s failed for message %s: %s: %s", name, turn.message.id, type(exc).__name__, exc)
            return f"error: tool {name} failed: {type(exc).__name__}: {exc}"
        metrics.TOOL_CALLS.labels(name, "ok").inc()
        return result
