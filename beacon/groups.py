"""Coalesced turns: a user's rapid messages processed together as one ``MessageGroup``.

Shared by the worker (which gathers a group in a user's lane, ``beacon.streams.coalesce``) and the API (which
answers a group once and records it, ``beacon.api.routers.process``). The rules live here, once:
text and media messages merge (a photo followed by its explanation is one turn); commands (``/word``) never
merge with anything; statuses and events (``EVENT_KINDS``) are never merged.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, Field

from beacon.messages import EVENT_KINDS, INBOUND, BeaconMessage, stable_id

#: Most messages one group holds (the worker stops gathering there; the API refuses more).
MAX_GROUP = 20


def is_command(msg: BeaconMessage) -> bool:
    """``/ping``, ``/help@bot``, any ``/word``: answered on its own, never merged."""
    text = (msg.text or "").strip()
    return msg.kind == "text" and len(text) > 1 and text.startswith("/") and not text[1].isspace()


def mergeable(msg: BeaconMessage) -> bool:
    """Whether ``msg`` may be part of a group: an inbound message a person wrote, not a command or an event."""
    return msg.direction == INBOUND and msg.kind not in EVENT_KINDS and not is_command(msg)


def group_id(message_ids: list[str]) -> str:
    """The id of the group of these messages (in order): the same group always gets the same id, hence the same
    reply ids."""
    return stable_id("group", *message_ids)


class MessageGroup(BaseModel):
    """One user's inbound messages, in order, to be answered as one turn."""

    messages: Annotated[list[BeaconMessage], Field(min_length=2, max_length=MAX_GROUP)]

    @property
    def id(self) -> str:
        return group_id([m.id for m in self.messages])

    @property
    def user_key(self) -> str:
        return self.messages[-1].user_key

    @property
    def last(self) -> BeaconMessage:
        return self.messages[-1]

    def problem(self) -> str | None:
        """Why the API cannot take this as one turn, or None."""
        keys = {m.user_key for m in self.messages}
        if len(keys) > 1:
            return f"group {self.id} mixes users {sorted(keys)[:3]}: a group is one user's messages"
        if len({m.id for m in self.messages}) < len(self.messages):
            return f"group {self.id} holds a message twice"
        for m in self.messages:
            if not mergeable(m):
                return (f"message {m.id[:80]!r} ({m.direction} {m.kind}) cannot be part of a group: commands, "
                        "statuses and events are processed on their own")
        return None
