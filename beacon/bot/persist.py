"""What a bot's turn writes beside its replies: the user's state and the outbox events, in the
writer's transaction (``beacon.api.writer.TurnWriter``), and the state read at the start of a turn."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from functools import cache
from typing import Any

import orjson
from sqlalchemy import Insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from beacon.api.models import OutboxEvent, User, UserState
from beacon.api.store import TurnRecord, utc
from beacon.bot.turn import BotUser
from beacon.messages import BeaconMessage


class StateNotJson(TypeError):
    """A handler left something in ``turn.state`` that is not JSON: a bug in the handler (answered 500;
    the worker retries, then dead-letters the message)."""


@cache
def _statements(dialect: str) -> tuple[Insert, Insert]:
    ins = postgresql.insert if dialect == "postgresql" else sqlite.insert
    upsert = ins(UserState)
    save_state = upsert.on_conflict_do_update(
        index_elements=[UserState.user_key],
        set_={
            "data": upsert.excluded.data,
            "message_id": upsert.excluded.message_id,
            "updated_at": upsert.excluded.updated_at,
        },
    )
    return save_state, ins(OutboxEvent).on_conflict_do_nothing()


async def save_turn_effects(conn: AsyncConnection, turns: Sequence[tuple[TurnRecord, datetime]]) -> None:
    """Store the state changes and outbox events of freshly stored turns (same transaction)."""
    save_state, insert_events = _statements(conn.dialect.name)
    states: dict[str, dict[str, Any]] = {}
    events: list[dict[str, Any]] = []
    for record, now in turns:
        msg = record.inbound
        if record.state_json is not None:  # the last turn of a user in the batch wins (turns are in order)
            states[msg.user_key] = {
                "user_key": msg.user_key, "data": record.state_json, "message_id": msg.id, "updated_at": now,
            }
        for index, item in enumerate(record.outbox):
            # A microsecond apart: delivered in the order the handler recorded them.
            created = now + timedelta(microseconds=index)
            events.append({
                "id": item.id, "message_id": item.message_id, "user_key": item.user_key, "kind": item.kind,
                "payload": orjson.dumps(item.data).decode(), "created_at": created, "due_at": now,
                "attempts": 0, "last_error": None, "done_at": None,
            })
    if states:
        await conn.execute(save_state, list(states.values()))
    if events:
        await conn.execute(insert_events, events)


async def load_user_and_state(engine: AsyncEngine, msg: BeaconMessage) -> tuple[BotUser, dict[str, Any]]:
    """The user as stored before this turn (or a new one) and their state (``{}`` when none)."""
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                select(User.profile_name, User.opted_out, User.first_seen, UserState.data)
                .select_from(User)
                .outerjoin(UserState, UserState.user_key == User.user_key)
                .where(User.user_key == msg.user_key)
            )
        ).one_or_none()
    state: dict[str, Any] = {}
    if row is not None and row.data:
        loaded = orjson.loads(row.data)
        state = loaded if isinstance(loaded, dict) else {}
    user = BotUser(
        key=msg.user_key,
        channel=msg.channel,
        account=msg.account,
        user_id=msg.user_id,
        profile_name=msg.profile_name or (row.profile_name if row is not None else None),
        language=msg.metadata.get("language"),
        opted_out=bool(row.opted_out) if row is not None else False,
        first_seen=utc(row.first_seen) if row is not None else None,
    )
    return user, state


def state_json_if_changed(before: bytes, state: dict[str, Any], msg: BeaconMessage) -> str | None:
    """The state's JSON when it differs from ``before`` (the JSON read at turn start), else None.
    Raises StateNotJson (nothing of the turn is stored) when a handler put something JSON cannot hold."""
    try:
        after = orjson.dumps(state, option=orjson.OPT_SORT_KEYS)
    except TypeError as exc:
        raise StateNotJson(
            f"turn.state of message {msg.id} (user {msg.user_key}) cannot be saved: {exc}; keep only JSON "
            "values (str, int, float, bool, None, lists, dicts with str keys) in the state"
        ) from exc
    return after.decode() if after != before else None
