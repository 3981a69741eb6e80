"""The ``Turn``: one inbound message (or a user's rapid messages coalesced into one group) going through the
pipeline, and everything a handler reaches."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from beacon.api import store
from beacon.bot import replies
from beacon.bot.media import media_bytes
from beacon.bot.outbox import Outbox
from beacon.config import Settings
from beacon.groups import group_id
from beacon.messages import BeaconMessage, Location, Media, stable_id

#: Most messages ``Turn.history`` returns, whatever a handler asks for.
HISTORY_MAX = 50


@dataclass(frozen=True)
class BotUser:
    """The user who wrote, as the API layer knows them before this turn (None fields: not known)."""

    key: str
    """``<channel>:<account>:<user id>``, the Kafka key of the conversation."""
    channel: str
    """whatsapp, telegram, webchat, nostr."""
    account: str
    """The channel account the user wrote to (WhatsApp phone number id, Telegram bot id, ...)."""
    user_id: str
    """The user's id on the channel (phone number, chat id, visitor id, pubkey)."""
    profile_name: str | None
    """The name the user gave the channel (WhatsApp profile name), if it sent one."""
    language: str | None
    """The user's language when the channel tells it (message metadata ``language``), else None."""
    opted_out: bool
    """The user asked not to receive proactive messages."""
    first_seen: datetime | None
    """When the user first wrote; None on their very first message."""

    @property
    def is_new(self) -> bool:
        """True on the user's first message."""
        return self.first_seen is None


@dataclass
class Turn:
    """One inbound message going through the pipeline.

    A handler reads ``message``, ``user`` and ``state``, may change ``state`` (a JSON-able dict saved
    with the replies, in one transaction, only if the turn's replies are stored), may record side
    effects in ``outbox`` (delivered after the commit, once per message id), and answers replies
    (texts, or messages from the helpers below) or None to pass to the next handler."""

    message: BeaconMessage
    """The inbound message, whole (``beacon.messages.BeaconMessage``); in a coalesced turn the latest one."""
    settings: Settings
    """The API's settings."""
    sessions: async_sessionmaker[AsyncSession]
    """Sessions on Beacon's database, for your own tables beside Beacon's (see ``examples/shop``)."""
    reset_conversation: bool = False
    handled_by: str | None = None
    notes: dict[str, Any] = field(default_factory=dict)
    user: BotUser = field(init=False)
    """The user, as stored before this turn when the pipeline holds a handler of your own (for
    built-ins alone only what the message says: never opted out, first seen unknown)."""
    state: dict[str, Any] = field(default_factory=dict)
    """This user's state: a JSON document read at the start of the turn, saved with its replies."""
    outbox: Outbox = field(default_factory=Outbox)
    """Side effects to run after the turn commits: ``turn.outbox.add("order_placed", {...})``."""
    match: re.Match[str] | None = None
    """The match of the ``Router.regex`` route that took the message."""
    args: str = ""
    """The text after the command, for a ``Router.command`` route (``/order 42`` -> ``"42"``)."""
    handoff_requested: str | None = None
    """The reason given to ``handoff``, if the turn asked for a human."""
    handoff_by: str = "bot"
    """Who asked for the human: ``user`` (``/human``), ``agent`` (its tool), else the handler's ``by``."""
    messages: list[BeaconMessage] = field(default_factory=list)
    """Every message of this turn, oldest first: the user's rapid messages coalesced into one turn
    (``BEACON_COALESCE_WINDOW_MS``), or just ``[message]``. Answer them together, once."""

    def __post_init__(self) -> None:
        if not self.messages:
            self.messages = [self.message]
        msg = self.message
        self.user = BotUser(msg.user_key, msg.channel, msg.account, msg.user_id, msg.profile_name,
                            msg.metadata.get("language"), opted_out=False, first_seen=None)
        self.outbox.message_id = self.message.id
        self.outbox.user_key = self.message.user_key

    # --- the message --------------------------------------------------------------------------

    @property
    def text(self) -> str:
        """The message's text, stripped ('' when it has none); in a coalesced turn the texts and captions of
        all its messages, one per line."""
        if len(self.messages) == 1:
            return (self.message.text or "").strip()
        parts = [(m.text or (m.media.caption if m.media else None) or "").strip() for m in self.messages]
        return "\n".join(part for part in parts if part)

    @property
    def group_id(self) -> str | None:
        """The id of the coalesced group this turn answers (None for a single message); reply ids derive from it."""
        return group_id([m.id for m in self.messages]) if len(self.messages) > 1 else None

    @property
    def kind(self) -> str:
        """text, image, audio, video, document, sticker, location, contacts, interactive, button, ..."""
        return self.message.kind

    @property
    def channel(self) -> str:
        """The message's channel (whatsapp, telegram, webchat, nostr)."""
        return self.message.channel

    @property
    def button_id(self) -> str | None:
        """The id of the button or list row the user chose, if this is an interactive reply."""
        return self.message.interactive_reply.id if self.message.interactive_reply else None

    @property
    def media(self) -> Media | None:
        """The media reference (id or link, mime type, caption, filename); in a coalesced turn the first one."""
        return next((m.media for m in self.messages if m.media is not None), None)

    @property
    def reply_to(self) -> str | None:
        """The channel message id the user quoted or replied to."""
        return self.message.quoted_channel_message_id

    @property
    def idempotency_key(self) -> str:
        """A key for external calls made by this turn: the same on every rerun of this message (or group)."""
        return stable_id("turn", self.group_id or self.message.id)

    def idempotency_key_for(self, purpose: str) -> str:
        """A distinct stable key per external call of this turn (``"charge"``, ``"email"``)."""
        return stable_id("turn", self.group_id or self.message.id, purpose)

    async def media_bytes(self) -> bytes:
        """The bytes of the user's image, voice note, document, ..., fetched through the channel's gateway
        (cached there; at most ``BEACON_MEDIA_MAX_BYTES``). Raises ``MediaUnavailable`` with the reason
        (no media, gateway down, media unknown or expired, too large): answer without them then."""
        with_media = next((m for m in self.messages if m.media is not None), self.message)
        return await media_bytes(self.settings, with_media)

    async def history(self, limit: int) -> list[BeaconMessage]:
        """The last ``limit`` (at most ``HISTORY_MAX``, or the built-ins' configured history sizes when
        larger) stored messages of the current conversation, oldest first, this one not included."""
        # The built-ins' own settings may ask for more; they keep working as configured.
        bound = max(HISTORY_MAX, self.settings.llm.history_messages, self.settings.api.history_command_size)
        async with self.sessions() as session:
            return await store.conversation_history(session, self.message.user_key, limit=max(0, min(limit, bound)))

    # --- answering ----------------------------------------------------------------------------

    def reply(self, text: str) -> BeaconMessage:
        """A text reply."""
        return replies.text(text)

    def buttons(self, text: str, buttons: dict[str, str] | list[str], *, footer: str | None = None) -> BeaconMessage:
        """Text with up to 3 reply buttons, ``{id: title}`` (or titles, used as ids too)."""
        return replies.buttons(text, buttons, footer=footer)

    def list_menu(self, text: str, button: str, rows: dict[str, str], *, section: str = "Options") -> BeaconMessage:
        """Text with a list menu behind ``button``: ``rows`` is ``{id: title}``."""
        return replies.choice_list(text, button, rows, section=section)

    def media_reply(self, kind: str, *, link: str | None = None, media_id: str | None = None,
                    caption: str | None = None, filename: str | None = None) -> BeaconMessage:
        """An image, audio, video, document or sticker by link or channel media id."""
        return replies.media(kind, link=link, media_id=media_id, caption=caption, filename=filename)

    def location(self, location: Location) -> BeaconMessage:
        """A map pin."""
        return replies.location(location)

    def template(self, name: str, language: str = "en", components: list[Any] | None = None) -> BeaconMessage:
        """An approved template (needed outside the 24-hour window on WhatsApp)."""
        return replies.template(name, language, components)

    def handoff(
        self, reason: str, *, by: str = "bot", note: str = "A person from our team will answer you here soon."
    ) -> str:
        """Hand the conversation to a human. When the turn is stored, the user is marked waiting for a
        human (the bot stays silent for them until an operator hands back: ``DELETE
        /v1/users/{user_key}/handoff``) and a ``handed_off`` event joins their timeline; this also records
        a ``handoff`` outbox event (reason, user) for your outbox callback or URL and sets
        ``state["handoff"]``. Returns ``note`` to send to the user."""
        self.handoff_requested = reason
        self.handoff_by = by
        self.state["handoff"] = {"reason": reason, "message_id": self.message.id}
        self.outbox.add("handoff", {"reason": reason, "user_key": self.message.user_key})
        return note
