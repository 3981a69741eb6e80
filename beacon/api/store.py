"""Persistence as plain functions, and the prebuilt statements of the processing hot path (run in
batches by ``beacon.api.writer``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, overload

import orjson
from sqlalchemy import ColumnElement, CompoundSelect, bindparam, func, literal, or_, select, union_all, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from beacon.api.models import Conversation, DeliveryState, Message, Processed, User
from beacon.messages import CONVERSATION_EVENTS, EVENT_KINDS, BeaconMessage, stable_id

if TYPE_CHECKING:
    from beacon.bot.outbox import OutboxItem


@overload
def utc(value: datetime) -> datetime: ...
@overload
def utc(value: None) -> None: ...
def utc(value: datetime | None) -> datetime | None:
    """Datetimes from SQLite come back naive: they are UTC."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


def first_conversation_id(user_key: str) -> str:
    return stable_id("conversation", user_key, "first")


def dump_messages(messages: list[BeaconMessage]) -> bytes:
    return orjson.dumps([m.model_dump(mode="json") for m in messages])


@dataclass
class TurnRecord:
    """What one processed inbound message writes."""

    inbound: BeaconMessage
    replies: list[BeaconMessage]
    replies_json: bytes
    reset_conversation: bool = False
    state_json: str | None = None
    """The user's new bot state (JSON), or None when the turn left it unchanged."""
    outbox: list[OutboxItem] = field(default_factory=list)
    handoff: tuple[str, str] | None = None
    """(by, reason) when the turn asked for a human (``Turn.handoff``)."""
    earlier: list[BeaconMessage] = field(default_factory=list)
    """In a coalesced turn, the group's messages before ``inbound`` (its last): stored and marked processed
    with the same replies, in the same transaction."""

    @property
    def members(self) -> list[BeaconMessage]:
        """Every inbound message this turn answers, oldest first."""
        return [*self.earlier, self.inbound]


def _message_row(msg: BeaconMessage, conversation_id: str, seq: int, now: datetime) -> dict[str, Any]:
    return {
        "id": msg.id,
        "seq": seq,
        "user_key": msg.user_key,
        "conversation_id": conversation_id,
        "direction": msg.direction,
        "kind": msg.kind,
        "text": msg.text,
        "body": orjson.dumps(msg.model_dump(mode="json")).decode(),
        "channel_message_id": msg.channel_message_id,
        "reply_to_id": msg.reply_to_id,
        "created_at": msg.created_at or now,
        "delivery_status": None,
        "delivery_rank": 0,
        "delivery_updated_at": None,
    }


class HotPath:
    """Statements of the processing hot path, built once per dialect so every request hits the
    compiled-statement cache; executed on a bare connection (no ORM unit of work)."""

    def __init__(self, dialect: str) -> None:
        ins = postgresql.insert if dialect == "postgresql" else sqlite.insert
        upsert = ins(User)
        self.upsert_user = upsert.on_conflict_do_update(
            index_elements=[User.user_key],
            set_={
                "last_seen": upsert.excluded.last_seen,
                "last_inbound_at": func.coalesce(upsert.excluded.last_inbound_at, User.last_inbound_at),
                "profile_name": func.coalesce(upsert.excluded.profile_name, User.profile_name),
            },
        ).returning(User.conversation_id, User.first_seen)
        self.upsert_users = self.upsert_user.returning(User.user_key)
        self.select_processed_many = select(Processed.message_id, Processed.replies).where(
            Processed.message_id.in_(bindparam("mids", expanding=True))
        )
        # What a turn starts with, for a batch of messages in one statement: each stored reply list (kind
        # "p", keyed by message id) and each handed-off user (kind "u", keyed by user key).
        self.select_seen: CompoundSelect[Any] = union_all(
            select(literal("p").label("kind"), Processed.message_id.label("key"), Processed.replies.label("value"))
            .where(Processed.message_id.in_(bindparam("mids", expanding=True))),
            select(literal("u"), User.user_key, User.handoff)
            .where(User.user_key.in_(bindparam("keys", expanding=True)), User.handoff.is_not(None)),
        )
        self.insert_conversation = ins(Conversation).on_conflict_do_nothing()
        self.insert_messages = ins(Message).on_conflict_do_nothing()
        self.insert_processed_once = ins(Processed).on_conflict_do_nothing().returning(Processed.message_id)
        delivery = ins(DeliveryState)
        self.upsert_delivery = delivery.on_conflict_do_update(
            index_elements=[DeliveryState.channel_message_id],
            set_={
                "status": delivery.excluded.status,
                "rank": delivery.excluded.rank,
                "error": delivery.excluded.error,
                "updated_at": delivery.excluded.updated_at,
            },
            where=DeliveryState.rank < delivery.excluded.rank,
        )
        forward = (
            update(Message)
            .where(Message.delivery_rank < bindparam("rank"))
            .values(
                delivery_status=bindparam("status"),
                delivery_rank=bindparam("rank"),
                delivery_updated_at=bindparam("now"),
            )
        )
        self.update_delivery_by_cmid = forward.where(Message.channel_message_id == bindparam("cmid"))
        self.update_delivery_by_id = forward.where(Message.id == bindparam("rid"))
        self.update_delivery_both = forward.where(
            or_(Message.channel_message_id == bindparam("cmid"), Message.id == bindparam("rid"))
        )


async def upsert_user(conn: AsyncConnection, hot: HotPath, msg: BeaconMessage, now: datetime, *, inbound: bool) -> str:
    """Create or update the user of ``msg``; returns the user's current conversation id."""
    params = {
        "user_key": msg.user_key,
        "channel": msg.channel,
        "account": msg.account,
        "user_id": msg.user_id,
        "profile_name": msg.profile_name,
        "first_seen": now,
        "last_seen": now,
        "last_inbound_at": now if inbound else None,
        "opted_out": False,
        "conversation_id": first_conversation_id(msg.user_key),
    }
    row = (await conn.execute(hot.upsert_user, params)).one()
    if utc(row.first_seen) == now:
        await conn.execute(
            hot.insert_conversation, {"id": row.conversation_id, "user_key": msg.user_key, "started_at": now}
        )
    return str(row.conversation_id)


async def touch_user(session: AsyncSession, msg: BeaconMessage, now: datetime, *, inbound: bool) -> str:
    """``upsert_user`` inside an ORM session's transaction."""
    conn = await session.connection()
    return await upsert_user(conn, HotPath(conn.dialect.name), msg, now, inbound=inbound)


async def delivery_state(session: AsyncSession, channel_message_id: str) -> str | None:
    return await session.scalar(
        select(DeliveryState.status).where(DeliveryState.channel_message_id == channel_message_id)
    )


async def get_user(session: AsyncSession, user_key: str) -> User | None:
    return await session.get(User, user_key)


async def get_message(session: AsyncSession, message_id: str) -> BeaconMessage | None:
    """A stored message (any direction) by id."""
    body = await session.scalar(select(Message.body).where(Message.id == message_id))
    return None if body is None else BeaconMessage.model_validate_json(body)


async def conversation_history(
    session: AsyncSession, user_key: str, *, limit: int, conversation_id: str | None = None
) -> list[BeaconMessage]:
    """The last ``limit`` messages of the user's current conversation, oldest first: as edited, without
    those the user deleted and without the event records themselves (an edit is shown in what it edited)."""
    if conversation_id is None:
        conversation_id = await session.scalar(select(User.conversation_id).where(User.user_key == user_key))
        if conversation_id is None:
            return []
    rows = await session.scalars(
        select(Message.body)
        .where(Message.user_key == user_key, Message.conversation_id == conversation_id)
        .where(Message.kind.not_in(EVENT_KINDS | CONVERSATION_EVENTS), Message.deleted_at.is_(None))
        .order_by(Message.created_at.desc(), Message.seq.desc())
        .limit(limit)
    )
    return [BeaconMessage.model_validate_json(body) for body in reversed(list(rows))]


async def message_page(
    session: AsyncSession, user_key: str, *, limit: int, older_than: ColumnElement[bool] | None = None
) -> list[Message]:
    """A page of a user's messages (all conversations), newest first (created_at, seq, id descending),
    past ``older_than`` (see beacon.api.paging)."""
    stmt = select(Message).where(Message.user_key == user_key)
    if older_than is not None:
        stmt = stmt.where(older_than)
    stmt = stmt.order_by(Message.created_at.desc(), Message.seq.desc(), Message.id.desc()).limit(limit)
    return list(await session.scalars(stmt))


async def find_users(session: AsyncSession, text: str, *, limit: int) -> list[User]:
    """Users whose key contains ``text`` or who have a message containing it, most recently seen first."""
    pattern = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    with_text = select(Message.user_key).where(Message.text.like(pattern, escape="\\"))
    stmt = (
        select(User)
        .where(or_(User.user_key.like(pattern, escape="\\"), User.user_key.in_(with_text)))
        .order_by(User.last_seen.desc())
        .limit(limit)
    )
    return list(await session.scalars(stmt))


async def record_outbound(session: AsyncSession, msg: BeaconMessage, now: datetime) -> None:
    """Store a proactive outbound message (after ``touch_user`` in the same transaction)."""
    conn = await session.connection()
    conversation_id = await session.scalar(select(User.conversation_id).where(User.user_key == msg.user_key))
    await conn.execute(HotPath(conn.dialect.name).insert_messages, [_message_row(msg, conversation_id or "", 0, now)])
