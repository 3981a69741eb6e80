"""Human handoff: who answers a user (the bot, or a person), and the events that record each change in
the user's conversation timeline (messages of kinds ``handed_off`` and ``handed_back``)."""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from beacon.api import metrics
from beacon.api.models import User
from beacon.api.store import HotPath, _message_row
from beacon.messages import HANDED_BACK, HANDED_OFF, STATUS, BeaconMessage

log = logging.getLogger(__name__)

#: A human was asked for (``/human``, the agent's tool, ``turn.handoff``); no operator has taken over yet.
WAITING = "waiting"
#: An operator took the conversation over (``PUT /v1/users/{user_key}/handoff``).
OPERATOR = "operator"


def event_message(
    event_id: str, user: BeaconMessage | User, kind: str, *, by: str, reason: str | None, handoff: str | None,
    now: datetime,
) -> BeaconMessage:
    """A timeline event of the user (direction status, kind ``handed_off`` or ``handed_back``)."""
    who = f"by {by}" + (f": {reason}" if reason else "")
    text = f"Handed to a human {who}" if kind == HANDED_OFF else f"Handed back to the bot {who}"
    metadata = {"by": by, **({"reason": reason} if reason else {}), **({"handoff": handoff} if handoff else {})}
    return BeaconMessage(
        id=event_id,
        user_key=user.user_key,
        channel=user.channel,
        account=user.account,
        user_id=user.user_id,
        direction=STATUS,
        kind=kind,
        text=text,
        created_at=now,
        metadata=metadata,
    )


async def change_handoff(
    conn: AsyncConnection,
    user: BeaconMessage | User,
    handoff: str | None,
    *,
    by: str,
    reason: str | None,
    now: datetime,
    event_id: str,
    seq: int = 0,
    when_handed_off: bool | None = None,
) -> bool:
    """Set the user's handoff state and record the event in their current conversation, in the caller's
    transaction. ``when_handed_off`` False: only if the bot answers them now (a ``/human`` while a person
    already answers changes nothing); True: only if handed off (handing back twice records one event).
    Returns whether it changed."""
    stmt = update(User).where(User.user_key == user.user_key)
    if when_handed_off is not None:
        stmt = stmt.where(User.handoff.is_not(None) if when_handed_off else User.handoff.is_(None))
    stmt = stmt.values(handoff=handoff, handoff_by=by, handoff_reason=reason, handoff_at=now).returning(
        User.conversation_id
    )
    conversation_id = (await conn.execute(stmt)).scalar_one_or_none()
    if conversation_id is None:
        return False
    kind = HANDED_OFF if handoff else HANDED_BACK
    event = event_message(event_id, user, kind, by=by, reason=reason, handoff=handoff, now=now)
    await conn.execute(HotPath(conn.dialect.name).insert_messages, [_message_row(event, conversation_id, seq, now)])
    log.info(
        "conversation of %s %s by %s%s", user.user_key,
        f"handed to a human ({handoff})" if handoff else "handed back to the bot", by,
        f" ({reason})" if reason else "",
    )
    return True


async def refresh_waiting(engine: AsyncEngine) -> int:
    """Set the ``beacon_api_handoff_waiting`` gauge from the database (every API process sees the same count)."""
    async with engine.connect() as conn:
        waiting = int(await conn.scalar(select(func.count()).select_from(User).where(User.handoff == WAITING)) or 0)
    metrics.HANDOFF_WAITING.set(waiting)
    return waiting
