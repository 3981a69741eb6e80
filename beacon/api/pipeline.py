"""The handler framework: what a handler is and answers, and running an ordered list of them.

The built-in handlers and the assembly of the list from settings are in :mod:`beacon.api.handlers`;
handlers import this module, never the reverse.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from beacon.api.split import split_text, text_limit
from beacon.bot.turn import Turn as Turn
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
