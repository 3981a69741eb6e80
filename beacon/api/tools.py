"""Tools the agent may call: a few built in, and every tool of the MCP servers in settings
(official ``mcp`` SDK; stdio and streamable HTTP), each call bounded by a timeout."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

from beacon.api.pipeline import Turn
from beacon.config import McpServerSpec, Settings
from beacon.messages import utcnow

log = logging.getLogger(__name__)

ToolFn = Callable[[dict[str, Any], Turn], Awaitable[str]]


@dataclass(frozen=True)
class Tool:
    """One function the LLM can call, in the chat-completions ``tools`` form."""

    name: str
    description: str
    parameters: dict[str, Any]
    call: ToolFn

    def spec(self) -> dict[str, Any]:
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": self.parameters},
        }


async def _current_time(args: dict[str, Any], turn: Turn) -> str:
    return utcnow().isoformat()


async def _user_profile(args: dict[str, Any], turn: Turn) -> str:
    msg = turn.message
    return json.dumps({"name": msg.profile_name, "channel": msg.channel, "user_id": msg.user_id})


async def _handoff_to_human(args: dict[str, Any], turn: Turn) -> str:
    reason = str(args.get("reason") or "the agent handed off")[:500]
    turn.handoff(reason, by="agent")
    return (
        "Done: the conversation is handed to a person from the team, who will answer here; you will not be asked "
        "again until they hand it back. Tell the user, briefly, that a person will answer soon."
    )


BUILTIN_TOOLS = [
    Tool(
        "current_time",
        "The current date and time (UTC, ISO 8601).",
        {"type": "object", "properties": {}},
        _current_time,
    ),
    Tool(
        "user_profile",
        "The name, channel and id of the user you are talking to.",
        {"type": "object", "properties": {}},
        _user_profile,
    ),
    Tool(
        "handoff_to_human",
        "Hand the conversation to a person from the team, when the user asks for one or you cannot help. "
        "After it, the bot stays silent for this user until a person hands back.",
        {
            "type": "object",
            "properties": {"reason": {"type": "string", "description": "Why, in a few words, for the person."}},
            "required": ["reason"],
        },
        _handoff_to_human,
    ),
]


#: Tools a bot of your own gives the agent (``register_tool``), offered beside the built-in ones.
REGISTERED_TOOLS: list[Tool] = []


def register_tool(name: str, description: str, parameters: dict[str, Any] | None = None) -> Callable[[ToolFn], ToolFn]:
    """Offer the decorated ``async def fn(args, turn) -> str`` to the agent as tool ``name``
    (``parameters``: the JSON schema of ``args``). Registered when your module is imported, e.g. by
    naming it in BEACON_API_PIPELINE; a later registration of the same name replaces the earlier."""

    def register(fn: ToolFn) -> ToolFn:
        REGISTERED_TOOLS[:] = [t for t in REGISTERED_TOOLS if t.name != name]
        REGISTERED_TOOLS.append(Tool(name, description, parameters or {"type": "object", "properties": {}}, fn))
        return fn

    return register


def _tool_name(server: str, tool: str) -> str:
    """``<server>__<tool>`` restricted to the characters chat-completions accepts."""
    return re.sub(r"[^a-zA-Z0-9_-]", "_", f"{server}__{tool}")[:64]


class McpToolbox:
    """Connections to the configured MCP servers, opened at start-up and kept for the process."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.tools: list[Tool] = []
        self._stack = AsyncExitStack()

    async def start(self) -> None:
        for spec in self.settings.llm.mcp_servers:
            try:
                # asyncio.timeout keeps the connection in this task (its anyio scopes must exit here too).
                async with asyncio.timeout(self.settings.llm.mcp_timeout):
                    await self._connect(spec)
            except Exception as exc:  # one broken server must not stop the API; reported, not swallowed
                log.error(
                    "MCP server %r (%s) unavailable, the agent runs without its tools: %s: %s",
                    spec.name,
                    spec.url or spec.command,
                    type(exc).__name__,
                    exc,
                )

    async def _connect(self, spec: McpServerSpec) -> None:
        from mcp import Client, StdioServerParameters

        target: Any = spec.url if spec.url else StdioServerParameters(command=spec.command or "", args=list(spec.args))
        client = await self._stack.enter_async_context(Client(target,
                                                              read_timeout_seconds=self.settings.llm.mcp_timeout))
        listed = await client.list_tools()
        for tool in listed.tools:
            self.tools.append(self._wrap(spec, client, tool))
        log.info("MCP server %r: %d tools (%s)", spec.name, len(listed.tools), ", ".join(t.name for t in listed.tools))

    def _wrap(self, spec: McpServerSpec, client: Any, tool: Any) -> Tool:
        timeout = self.settings.llm.mcp_timeout

        async def call(args: dict[str, Any], turn: Turn) -> str:
            async with asyncio.timeout(timeout):
                result = await client.call_tool(tool.name, args)
            text = "\n".join(getattr(block, "text", "") or "" for block in result.content)
            if not text and result.structured_content is not None:
                text = json.dumps(result.structured_content)
            return f"error: {text}" if result.is_error else text

        return Tool(
            _tool_name(spec.name, tool.name),
            tool.description or f"{tool.name} from MCP server {spec.name}",
            tool.input_schema or {"type": "object", "properties": {}},
            call,
        )

    async def close(self) -> None:
        await self._stack.aclose()
