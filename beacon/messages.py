"""The BeaconMessage: the one record that travels on ``bm_in`` and ``bm_out``.

Its Avro form is ``schemas/beacon_message.avsc``; its JSON form (this model) is what the API
layer accepts and returns. Value sets that will grow (channels, kinds, statuses) are plain
strings with documented values, not enums, so adding one is a compatible change.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

#: Directions.
INBOUND = "inbound"
OUTBOUND = "outbound"
STATUS = "status"

#: Kinds of content. Inbound kinds mirror the Cloud API's message types; ``unsupported`` keeps the
#: channel's own type in ``raw_type``. Outbound adds ``template`` and ``read_receipt`` (mark the
#: user's message ``channel_message_id`` as read, optionally showing a typing indicator). The
#: ``EVENT_KINDS`` are inbound too but are things that happened, not something a person asked.
KINDS = frozenset(
    {
        "text",
        "image",
        "audio",
        "video",
        "document",
        "sticker",
        "location",
        "contacts",
        "interactive",
        "button",
        "reaction",
        "template",
        "read_receipt",
        "status",
        "unsupported",
    }
)

#: A user edited one of their messages: ``quoted_channel_message_id`` names it, the new content is in
#: the usual fields (``text``, or ``media`` with its caption).
EDIT = "edit"
#: A user deleted (revoked) one of their messages, named by ``quoted_channel_message_id``.
DELETE = "delete"
#: The user's identity on the channel changed (WhatsApp: a new phone number): the new user id is in
#: ``metadata["new_user_id"]`` (when the channel shares it), the channel's wording in ``text``.
USER_CHANGED = "user_changed"
#: The user answered a request for permission to call them: ``metadata["response"]`` (accept or
#: reject), the channel's whole reply as JSON in ``payload``.
CALL_PERMISSION = "call_permission"
#: Inbound kinds that record an event; the pipeline records them and never answers them.
EVENT_KINDS = frozenset({EDIT, DELETE, USER_CHANGED, CALL_PERMISSION})
#: The conversation was handed to a human (an operator took over, or the user or the bot asked for one):
#: ``metadata["by"]``, ``metadata["reason"]``, ``metadata["handoff"]`` (waiting or operator).
HANDED_OFF = "handed_off"
#: An operator handed the conversation back to the bot: ``metadata["by"]``.
HANDED_BACK = "handed_back"
#: Kinds the API records in a conversation's timeline itself (direction status); never on a topic.
CONVERSATION_EVENTS = frozenset({HANDED_OFF, HANDED_BACK})
KINDS = KINDS | EVENT_KINDS

#: Delivery states carried by status messages, in the order they may advance.
STATUS_ORDER = {"sent": 1, "delivered": 2, "read": 3, "played": 4, "failed": 5}


def utcnow() -> datetime:
    """Now, in UTC, at the millisecond precision of the wire format."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def make_user_key(channel: str, account: str, user_id: str) -> str:
    """``<channel>:<account>:<user id>``: the Kafka key of every message of one conversation."""
    return f"{channel}:{account}:{user_id}"


def stable_id(*parts: str) -> str:
    """A deterministic id from its parts, so a redelivered input yields the same id."""
    digest = hashlib.sha256("\x1f".join(parts).encode()).hexdigest()
    return str(uuid.UUID(digest[:32]))


class Media(BaseModel):
    """A media reference: the channel's media id or a link, with what is known about it."""

    model_config = ConfigDict(frozen=True)

    id: str | None = None
    link: str | None = None
    mime_type: str | None = None
    caption: str | None = None
    filename: str | None = None
    sha256: str | None = None


class Location(BaseModel):
    model_config = ConfigDict(frozen=True)

    latitude: float
    longitude: float
    name: str | None = None
    address: str | None = None


class Reaction(BaseModel):
    """An emoji on a message; an empty emoji removes the reaction."""

    model_config = ConfigDict(frozen=True)

    emoji: str = ""
    target_id: str = Field(description="Channel message id the reaction applies to.")


class InteractiveReply(BaseModel):
    """The user tapped a button or a list row (or a template's quick reply)."""

    model_config = ConfigDict(frozen=True)

    type: str = Field(description="button_reply, list_reply or button (template quick reply).")
    id: str | None = None
    title: str | None = None
    description: str | None = None


class StatusError(BaseModel):
    """Why a message failed, as the channel reported it."""

    model_config = ConfigDict(frozen=True)

    code: int | None = None
    title: str | None = None
    message: str | None = None
    details: str | None = None


class BeaconMessage(BaseModel):
    """One message, inbound, outbound or a delivery status, on any channel."""

    model_config = ConfigDict(frozen=True)

    id: str = Field(description="Unique id; derived from the channel's id for inbound messages.")
    user_key: str = Field(description="<channel>:<account>:<user id>; the Kafka key.")
    channel: str = Field(description="whatsapp, telegram, webchat, ...")
    account: str = Field(description="The business account on the channel (WhatsApp: phone number id).")
    user_id: str = Field(description="The user on the channel (WhatsApp: wa_id).")
    direction: str = Field(description="inbound, outbound or status.")
    kind: str = Field(
        description="text, image, ..., status, unsupported (see KINDS); the events edit, delete, user_changed, "
        "call_permission are recorded, never answered (see EVENT_KINDS)."
    )
    text: str | None = None
    media: Media | None = None
    location: Location | None = None
    reaction: Reaction | None = None
    interactive_reply: InteractiveReply | None = None
    payload: str | None = Field(
        None,
        description="JSON of structured content without a typed field: contacts, outbound interactive "
        "buttons and lists, template name/language/components.",
    )
    raw_type: str | None = Field(None, description="The channel's own type name (kept for unsupported).")
    profile_name: str | None = None
    channel_message_id: str | None = Field(None, description="The channel's id of this message (wamid).")
    reply_to_id: str | None = Field(None, description="BeaconMessage id this message answers.")
    quoted_channel_message_id: str | None = Field(
        None,
        description="Channel id of the message quoted or replied to (WhatsApp context.id); for kinds edit and "
        "delete, the message edited or deleted.",
    )
    status: str | None = Field(None, description="For statuses: sent, delivered, read, failed, played.")
    error: StatusError | None = None
    created_at: datetime = Field(default_factory=utcnow)
    channel_timestamp: datetime | None = None
    trace_id: str = Field(default_factory=lambda: uuid.uuid4().hex)
    attempt: int = 0
    metadata: dict[str, str] = Field(default_factory=dict)

    @field_validator("created_at", "channel_timestamp")
    @classmethod
    def _millis_utc(cls, value: datetime | None) -> datetime | None:
        """Timestamps travel as Avro timestamp-millis: keep them in UTC at millisecond precision, so a
        message equals itself after a round trip through the wire format."""
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC).replace(microsecond=value.microsecond // 1000 * 1000)

    # --- constructors for the common cases --------------------------------------------------

    @classmethod
    def inbound_text(
        cls,
        *,
        channel: str,
        account: str,
        user_id: str,
        text: str,
        channel_message_id: str | None = None,
        **extra: Any,
    ) -> BeaconMessage:
        """A text a user wrote; its id derives from the channel's id when there is one."""
        msg_id = stable_id(channel, account, channel_message_id) if channel_message_id else str(uuid.uuid4())
        return cls(
            id=msg_id,
            user_key=make_user_key(channel, account, user_id),
            channel=channel,
            account=account,
            user_id=user_id,
            direction=INBOUND,
            kind="text",
            text=text,
            channel_message_id=channel_message_id,
            **extra,
        )

    def reply_text(self, text: str, *, index: int = 0, **extra: Any) -> BeaconMessage:
        """The ``index``-th text reply to this message; the id is deterministic, so a re-run
        of the same inbound message yields the same reply ids."""
        return BeaconMessage(
            id=stable_id("reply", self.id, str(index)),
            user_key=self.user_key,
            channel=self.channel,
            account=self.account,
            user_id=self.user_id,
            direction=OUTBOUND,
            kind="text",
            text=text,
            reply_to_id=self.id,
            trace_id=self.trace_id,
            **extra,
        )

    @classmethod
    def status_update(
        cls,
        *,
        channel: str,
        account: str,
        user_id: str,
        channel_message_id: str,
        status: str,
        error: StatusError | None = None,
        **extra: Any,
    ) -> BeaconMessage:
        """A delivery status of a message we sent; the id derives from (message id, status)."""
        return cls(
            id=stable_id(channel, account, channel_message_id, status),
            user_key=make_user_key(channel, account, user_id),
            channel=channel,
            account=account,
            user_id=user_id,
            direction=STATUS,
            kind="status",
            channel_message_id=channel_message_id,
            status=status,
            error=error,
            **extra,
        )
