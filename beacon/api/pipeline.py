"""The business logic: an ordered list of handlers from settings, each answering or passing."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from beacon.api.split import split_text, text_limit
from beacon.bot.turn import Turn as Turn
from beacon.config import Settings
from beacon.messages import EVENT_KINDS, OUTBOUND, BeaconMessage, stable_id

log = logging.getLogger(__name__)

#: What a handler answers: reply texts, or whole outbound messages (ids and addressing are filled in).
Answer = list[str | BeaconMessage]


class Handler(Protocol):
    name: str

    async def handle(self, turn: Turn) -> Answer | None:
        """Replies, or None to pass the message to the next handler."""


@dataclass
class FunctionHandler:
    name: str
    fn: Callable[[Turn], Awaitable[Answer | None]]

    async def handle(self, turn: Turn) -> Answer | None:
        return await self.fn(turn)


# --- built-in commands -------------------------------------------------------------------------

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
        size = turn.settings.history_command_size
        past = await turn.history(size)
        if not past:
            return ["No messages yet."]
        lines = [f"{'you' if m.direction == 'inbound' else 'bot'}: {describe(m)}" for m in past]
        return [f"Last {len(lines)} messages:\n" + "\n".join(lines)]
    if command == "/human":
        return [turn.handoff("the user asked for a human (/human)", by="user")]
    return None


def describe(msg: BeaconMessage) -> str:
    """A message as one line of text."""
    if msg.text:
        return msg.text
    if msg.interactive_reply and msg.interactive_reply.title:
        return msg.interactive_reply.title
    if msg.media and msg.media.caption:
        return f"[{msg.kind}] {msg.media.caption}"
    if msg.reaction:
        return f"[reaction {msg.reaction.emoji}]"
    return f"[{msg.kind}]"


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


# --- assembly ----------------------------------------------------------------------------------


def build_pipeline(settings: Settings) -> list[Handler]:
    """The handlers named in BEACON_API_PIPELINE: built-ins (agent and hook only when configured) and
    handlers of your own by import path or entry point (``beacon.bot.load``)."""
    handlers: list[Handler] = []
    for name in settings.api_pipeline:
        if name == "commands":
            handlers.append(FunctionHandler("commands", commands))
        elif name == "fallback":
            handlers.append(FunctionHandler("fallback", fallback))
        elif name == "agent":
            if settings.llm_base_url:
                from beacon.api.agent import AgentHandler

                handlers.append(AgentHandler(settings))
        elif name == "hook":
            if settings.hook_url:
                from beacon.api.hook import HookHandler

                handlers.append(HookHandler(settings))
        else:
            from beacon.bot.load import load_handler

            handlers.append(load_handler(name, settings))
    return handlers


def as_replies(inbound: BeaconMessage, answer: Answer, base_id: str | None = None) -> list[BeaconMessage]:
    """Turn a handler's answer into outbound messages with deterministic ids (index = position) derived from
    ``base_id`` (a coalesced group's id) or the inbound id; a text longer than the channel takes becomes
    ordered parts (``split_long_text``)."""
    replies: list[BeaconMessage] = []
    base = base_id or inbound.id
    for index, item in enumerate(answer):
        if isinstance(item, str):
            reply = inbound.reply_text(item, index=index)
            if base_id is not None:
                reply = reply.model_copy(update={"id": stable_id("reply", base, str(index))})
        else:
            reply = item.model_copy(
                update={
                    "id": stable_id("reply", base, str(index)),
                    "user_key": inbound.user_key,
                    "channel": inbound.channel,
                    "account": inbound.account,
                    "user_id": inbound.user_id,
                    "direction": OUTBOUND,
                    "reply_to_id": inbound.id,
                    "trace_id": inbound.trace_id,
                }
            )
        replies += split_long_text(reply)
    return replies


def split_long_text(reply: BeaconMessage) -> list[BeaconMessage]:
    """A text reply longer than its channel's limit as ordered parts, each with an id derived from the
    reply id and its part number (a re-processed message yields the same ids) and metadata ``part``
    (``n/total``) and ``parts_of`` (the reply id); any other reply as it is."""
    if reply.kind != "text" or not reply.text:
        return [reply]
    pieces = split_text(reply.text, text_limit(reply.channel))
    if len(pieces) == 1:
        return [reply]
    return [
        reply.model_copy(
            update={
                "id": stable_id("reply-part", reply.id, str(n)),
                "text": piece,
                "metadata": {**reply.metadata, "part": f"{n}/{len(pieces)}", "parts_of": reply.id},
            }
        )
        for n, piece in enumerate(pieces, 1)
    ]


async def run_pipeline(handlers: list[Handler], turn: Turn) -> list[BeaconMessage]:
    """Ask each handler in order; the first answer wins. No handler answering means no reply. An event
    (an edit, a deletion, a number change: ``EVENT_KINDS``) is no question: it is recorded
    (``beacon.api.events``), never answered."""
    if turn.message.kind in EVENT_KINDS:
        return []
    for handler in handlers:
        answer = await handler.handle(turn)
        if answer is not None:
            turn.handled_by = handler.name
            return as_replies(turn.message, answer, turn.group_id)
    return []
