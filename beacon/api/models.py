"""The API layer's tables: users, conversations, messages (with delivery state), processed ids, bot
state and the outbox."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, DateTime, Index, Integer, MetaData, String, Text, false
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class User(Base):
    """One user of one channel account, keyed by the BeaconMessage user key."""

    __tablename__ = "users"

    user_key: Mapped[str] = mapped_column(String(255), primary_key=True)
    channel: Mapped[str] = mapped_column(String(32))
    account: Mapped[str] = mapped_column(String(128))
    user_id: Mapped[str] = mapped_column(String(128))
    profile_name: Mapped[str | None] = mapped_column(String(255))
    first_seen: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_seen: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_inbound_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    opted_out: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    conversation_id: Mapped[str] = mapped_column(String(64))
    new_user_id: Mapped[str | None] = mapped_column(
        String(128), doc="The user's id after they changed it (WhatsApp: new number); later messages use a new key."
    )
    handoff: Mapped[str | None] = mapped_column(
        String(16), doc="None: the bot answers; waiting: a human was asked for; operator: a person took over."
    )
    handoff_by: Mapped[str | None] = mapped_column(
        String(255), doc="Who made the last change: user, agent, a handler, an operator."
    )
    handoff_reason: Mapped[str | None] = mapped_column(Text)
    handoff_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), doc="Since when (last change).")


class Conversation(Base):
    """A stretch of one user's messages; `/reset` ends it and starts another."""

    __tablename__ = "conversations"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_key: Mapped[str] = mapped_column(String(255), index=True)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Message(Base):
    """A message in or out; outbound ones carry a delivery state that only moves forward."""

    __tablename__ = "messages"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, default=0)
    user_key: Mapped[str] = mapped_column(String(255))
    conversation_id: Mapped[str] = mapped_column(String(64))
    direction: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(32))
    text: Mapped[str | None] = mapped_column(Text)
    body: Mapped[str] = mapped_column(Text, doc="The BeaconMessage JSON.")
    channel_message_id: Mapped[str | None] = mapped_column(String(255), index=True)
    reply_to_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    delivery_status: Mapped[str | None] = mapped_column(String(16))
    delivery_rank: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    delivery_updated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    edited_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), doc="When the user last edited it.")
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), doc="When the user deleted it.")

    __table_args__ = (Index("ix_messages_user_key_created_at", "user_key", "created_at"),)


class DeliveryState(Base):
    """The furthest delivery state reported for a channel message id (a late `delivered` never beats `read`)."""

    __tablename__ = "delivery_states"

    channel_message_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    user_key: Mapped[str] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16))
    rank: Mapped[int] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text, doc="JSON of the channel's error, if any.")
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Processed(Base):
    """Every inbound id processed once (the primary key settles concurrent duplicates), with its replies."""

    __tablename__ = "processed"

    message_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    processed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    replies: Mapped[str] = mapped_column(Text, doc="JSON list of the reply BeaconMessages.")


class MessageGroupMember(Base):
    """A message answered as part of a coalesced group (``BEACON_COALESCE_WINDOW_MS``): the group's id and the
    message's position in it. Each member also has its ``processed`` row, holding the group's replies."""

    __tablename__ = "message_groups"

    message_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    group_id: Mapped[str] = mapped_column(String(64), index=True)
    position: Mapped[int] = mapped_column(Integer)
    size: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class UserState(Base):
    """A bot's per-user state: one JSON document, saved in the transaction of the turn that changed it."""

    __tablename__ = "user_states"

    user_key: Mapped[str] = mapped_column(String(255), primary_key=True)
    data: Mapped[str] = mapped_column(Text, doc="The state's JSON object.")
    message_id: Mapped[str] = mapped_column(String(64), doc="The inbound message whose turn saved it last.")
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class OutboxEvent(Base):
    """A side effect a turn recorded, committed with its replies, delivered after (at least once, marked done)."""

    __tablename__ = "outbox"

    id: Mapped[str] = mapped_column(String(64), primary_key=True, doc="Derived from message id and position.")
    message_id: Mapped[str] = mapped_column(String(64), index=True)
    user_key: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(64))
    payload: Mapped[str] = mapped_column(Text, doc="JSON of the event's data.")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    due_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), doc="Next delivery attempt (or lease end).")
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    last_error: Mapped[str | None] = mapped_column(Text)
    done_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (Index("ix_outbox_done_at_due_at", "done_at", "due_at"),)
