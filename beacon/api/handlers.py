"""The built-in handlers (commands, fallback) and the assembly of the pipeline from BEACON_API_PIPELINE.

The handler framework (what a handler is, running the list) is :mod:`beacon.api.pipeline`; this module
imports it and the other handlers (agent, hook, your own), and nothing imports this module back but
the application that builds its pipeline.
"""

from __future__ import annotations

from beacon.api.agent import AgentHandler
from beacon.api.hook import HookHandler
from beacon.api.pipeline import Answer, FunctionHandler, Handler, Turn, describe
from beacon.bot.load import load_handler
from beacon.config import Settings

COMMANDS = {
    "/ping": "check the bot is alive",
    "/help": "this list",
    "/reset": "forget our conversation so far",
    "/history": "show the last few messages",
    "/human": "talk to a person from our team",
}


async def commands(turn: Turn) -> Answer | None:
    msg = turn.message
    if msg.kind != "text" or not msg.text or not msg.text.startswith("/"):
        return None
    # "/ping@mybot" in Telegram groups names the bot: the command is the part before the "@"
    command = msg.text.strip().split()[0].split("@", 1)[0].lower()
    if command == "/ping":
        return ["pong"]
    if command == "/help":
        return ["Commands:\n" + "\n".join(f"{name} - {what}" for name, what in COMMANDS.items())]
    if command == "/reset":
        turn.reset_conversation = True
        return ["Done: I forgot our conversation. Let's start over."]
    if command == "/history":
        size = turn.settings.api.history_command_size
        past = await turn.history(size)
        if not past:
            return ["No messages yet."]
        lines = [f"{'you' if m.direction == 'inbound' else 'bot'}: {describe(m)}" for m in past]
        return [f"Last {len(lines)} messages:\n" + "\n".join(lines)]
    if command == "/human":
        return [turn.handoff("the user asked for a human (/human)", by="user")]
    return None


async def fallback(turn: Turn) -> Answer:
    msg = turn.message
    if len(turn.messages) > 1:
        return ["You said: " + "\n".join(describe(m) for m in turn.messages)]
    if msg.kind == "text":
        return [f"You said: {msg.text or ''}"]
    if msg.interactive_reply is not None:
        return [f"You chose: {msg.interactive_reply.title or msg.interactive_reply.id or '?'}"]
    if msg.kind == "reaction":
        return ["Thanks for the reaction."]
    if msg.kind in {"image", "audio", "video", "document", "sticker", "location", "contacts"}:
        return [f"Got your {msg.kind}, thanks."]
    return ["Sorry, I can only read text messages for now."]


def build_pipeline(settings: Settings) -> list[Handler]:
    """The handlers named in BEACON_API_PIPELINE: built-ins (agent and hook only when configured) and
    handlers of your own by import path or entry point (``beacon.bot.load``)."""
    handlers: list[Handler] = []
    for name in settings.api.pipeline:
        if name == "commands":
            handlers.append(FunctionHandler("commands", commands))
        elif name == "fallback":
            handlers.append(FunctionHandler("fallback", fallback))
        elif name == "agent":
            if settings.llm.base_url:
                handlers.append(AgentHandler(settings))
        elif name == "hook":
            if settings.api.hook_url:
                handlers.append(HookHandler(settings))
        else:
            handlers.append(load_handler(name, settings))
    return handlers
