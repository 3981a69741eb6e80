"""Operator endpoints of human handoff: take a conversation over, hand it back."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, status

from beacon.api import store
from beacon.api.deps import Authorized, StateDep
from beacon.api.handoff import OPERATOR, change_handoff, refresh_waiting
from beacon.api.routers.operator import get_user
from beacon.api.schemas import HandoffRequest, UserOut, problems
from beacon.messages import utcnow

router = APIRouter(tags=["operators"], dependencies=[Authorized])


@router.put(
    "/v1/users/{user_key}/handoff",
    response_model=UserOut,
    summary="Take a conversation over: the bot stays silent for this user; send with POST /v1/messages/send.",
    responses=problems(400, 401, 404, 413, 422, 503),
)
async def take_over(user_key: str, body: HandoffRequest, state: StateDep) -> UserOut:
    """The user's messages are still recorded (see the messages listing); a ``handed_off`` event with the
    operator and reason joins the timeline. Taking over again (another operator) records another event."""
    async with state.write_lock, state.sessions.begin() as session:
        user = await store.get_user(session, user_key)
        if user is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no user with key {user_key!r}")
        conn = await session.connection()
        await change_handoff(
            conn, user, OPERATOR, by=body.operator, reason=body.reason, now=utcnow(), event_id=str(uuid.uuid4())
        )
    await refresh_waiting(state.read_engine)
    return await get_user(user_key, state)


@router.delete(
    "/v1/users/{user_key}/handoff",
    response_model=UserOut,
    summary="Hand a conversation back to the bot, which answers the user's next message.",
    responses=problems(400, 401, 404, 422, 503),
)
async def hand_back(
    user_key: str,
    state: StateDep,
    operator: Annotated[str, Query(min_length=1, max_length=255, description="Who hands back (timeline).")],
) -> UserOut:
    """A ``handed_back`` event joins the timeline. A conversation the bot already answers is left as it is
    (no event): handing back twice is harmless."""
    async with state.write_lock, state.sessions.begin() as session:
        user = await store.get_user(session, user_key)
        if user is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no user with key {user_key!r}")
        conn = await session.connection()
        await change_handoff(
            conn, user, None, by=operator, reason=None, now=utcnow(), event_id=str(uuid.uuid4()),
            when_handed_off=True,
        )
    await refresh_waiting(state.read_engine)
    return await get_user(user_key, state)
