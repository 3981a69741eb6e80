"""What an event does to the stored conversation: an edit rewrites the message it names, a deletion
marks it deleted, a changed user id is recorded on the user. Events are stored like any inbound
message (in the same transaction, once per id) and never answered (``beacon.api.pipeline``)."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from beacon.api.models import Message, User
from beacon.messages import DELETE, EDIT, EVENT_KINDS, INBOUND, USER_CHANGED, BeaconMessage

log = logging.getLogger(__name__)


async def apply_event(conn: AsyncConnection, event: BeaconMessage, now: datetime) -> None:
    """Apply one stored event of ``EVENT_KINDS`` to what it is about; other kinds are left alone."""
    if event.kind not in EVENT_KINDS:
        return
    when = event.channel_timestamp or now
    if event.kind in (EDIT, DELETE):
        await _change_message(conn, event, when)
    elif event.kind == USER_CHANGED:
        new_id = event.metadata.get("new_user_id")
        await conn.execute(update(User).where(User.user_key == event.user_key).values(new_user_id=new_id))
        log.info("user %s changed their id on %s to %s (event %s): their next messages arrive under a new user "
                 "key", event.user_key, event.channel, new_id or "an id the channel did not share", event.id)


async def _change_message(conn: AsyncConnection, event: BeaconMessage, when: datetime) -> None:
    target = event.quoted_channel_message_id
    row = None
    if target:
        row = (await conn.execute(
            select(Message.id, Message.body).where(
                Message.user_key == event.user_key, Message.channel_message_id == target,
                Message.direction == INBOUND,
            )
        )).first()
    if row is None:
        log.info("%s %s of user %s names message %s, which is not stored (sent before this database, or the "
                 "channel did not say which): recorded, nothing changed", event.kind, event.id, event.user_key,
                 target or "(none)")
        return
    original = BeaconMessage.model_validate_json(row.body)
    values: dict[str, Any]
    if event.kind == DELETE:
        changed = original.model_copy(update={"metadata": {**original.metadata, "deleted_by": event.id}})
        values = {"deleted_at": when}
    elif original.media is not None and original.kind != "text":
        media = original.media.model_copy(update={"caption": event.text})
        changed = original.model_copy(update={"media": media, "metadata": {**original.metadata, "edited_by": event.id}})
        values = {"edited_at": when}
    else:
        changed = original.model_copy(update={"text": event.text, "metadata": {**original.metadata,
                                                                               "edited_by": event.id}})
        values = {"edited_at": when, "text": event.text}
    values["body"] = orjson.dumps(changed.model_dump(mode="json")).decode()
    await conn.execute(update(Message).where(Message.id == row.id).values(**values))
