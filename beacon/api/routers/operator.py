"""Operator endpoints: user lookup, paged history, proactive messages (produced to bm_out)."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, status

from beacon.api import metrics, store
from beacon.api.deps import ApiState, Authorized, StateDep
from beacon.api.models import Message, User
from beacon.api.paging import Cursor, cursor_of, parse_before
from beacon.api.schemas import (
    MessagePage,
    OptOut,
    SendRequest,
    SendResult,
    StoredMessage,
    UserList,
    UserOut,
    problems,
)
from beacon.api.split import text_limit, units
from beacon.api.window import WINDOWED_CHANNELS, apply_window, window_open
from beacon.api.wire import message_problems, text_problems, too_long
from beacon.config import Settings
from beacon.errors import KafkaError
from beacon.messages import OUTBOUND, BeaconMessage, make_user_key, utcnow
from beacon.routing import with_channel
from beacon.trace import new_span_id, record_headers

log = logging.getLogger(__name__)
router = APIRouter(tags=["operators"], dependencies=[Authorized])

#: Seconds a proactive send waits for the schema registry before answering 503.
_REGISTRY_WAIT = 15.0


@router.get(
    "/v1/users",
    response_model=UserList,
    summary="Find users whose key, or one of whose messages, contains a text.",
    responses=problems(401, 422, 503),
)
async def find_users(
    q: Annotated[str, Query(min_length=1, max_length=200, description="Text to look for.")],
    state: StateDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> UserList:
    found = text_problems(q)
    if found:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, detail="`q` " + "; ".join(found))
    async with state.sessions() as session:
        users = await store.find_users(session, q, limit=limit)
    return UserList(query=q, users=[_user_out(state, u) for u in users])


@router.get(
    "/v1/users/{user_key}",
    response_model=UserOut,
    summary="Look a user up by user key.",
    responses=problems(401, 404, 422, 503),
)
async def get_user(user_key: str, state: StateDep) -> UserOut:
    async with state.sessions() as session:
        user = await store.get_user(session, user_key)
    if user is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no user with key {user_key!r}")
    return _user_out(state, user)


def _user_out(state: ApiState, user: User) -> UserOut:
    last_inbound = store.utc(user.last_inbound_at)
    return UserOut(
        user_key=user.user_key,
        channel=user.channel,
        account=user.account,
        user_id=user.user_id,
        profile_name=user.profile_name,
        first_seen=store.utc(user.first_seen),
        last_seen=store.utc(user.last_seen),
        last_inbound_at=last_inbound,
        opted_out=user.opted_out,
        conversation_id=user.conversation_id,
        window_open=window_open(state.settings, last_inbound, utcnow(), channel=user.channel),
        new_user_id=user.new_user_id,
        handoff=user.handoff,
        handoff_by=user.handoff_by,
        handoff_reason=user.handoff_reason,
        handoff_at=store.utc(user.handoff_at),
    )


@router.put(
    "/v1/users/{user_key}/opt-out",
    response_model=UserOut,
    summary="Opt a user out of (or back in to) proactive messages.",
    responses=problems(400, 401, 404, 413, 422, 503),
)
async def set_opt_out(user_key: str, body: OptOut, state: StateDep) -> UserOut:
    async with state.write_lock, state.sessions.begin() as session:
        user = await store.get_user(session, user_key)
        if user is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no user with key {user_key!r}")
        user.opted_out = body.opted_out
    log.info("user %s opted %s", user_key, "out" if body.opted_out else "back in")
    return await get_user(user_key, state)


@router.get(
    "/v1/users/{user_key}/messages",
    response_model=MessagePage,
    summary="A user's messages, newest first, paged by a unique cursor.",
    responses=problems(401, 422, 503),
)
async def user_messages(
    user_key: str,
    state: StateDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    before: Annotated[
        str | None,
        Query(
            description="The `next_before` cursor of the previous page: only messages after it in the page order "
            "(created_at, seq, id, newest first). An ISO 8601 time is accepted too: only messages older than it "
            "(its UTC offset is applied)."
        ),
    ] = None,
) -> MessagePage:
    older_than = None
    if before is not None:
        try:
            after = parse_before(before)
        except ValueError as exc:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, detail=str(exc)) from exc
        older_than = after.older() if isinstance(after, Cursor) else Message.created_at < after
    async with state.sessions() as session:
        rows = await store.message_page(session, user_key, limit=limit + 1, older_than=older_than)
    more = len(rows) > limit
    rows = rows[:limit]
    messages = [
        StoredMessage(
            message=BeaconMessage.model_validate_json(r.body),
            delivery_status=r.delivery_status,
            delivery_updated_at=store.utc(r.delivery_updated_at),
            edited_at=store.utc(r.edited_at),
            deleted_at=store.utc(r.deleted_at),
        )
        for r in rows
    ]
    next_before = cursor_of(rows[-1]).encode() if more and rows else None
    return MessagePage(user_key=user_key, messages=messages, next_before=next_before)


def _validate(req: SendRequest, settings: Settings) -> None:
    user_key = make_user_key(req.channel, req.account, req.user_id)
    found = too_long(
        {"id": req.id, "user_key": user_key, "channel": req.channel, "account": req.account, "user_id": req.user_id}
    )
    if req.channel not in settings.api.served_channels:
        found.append(
            f"channel {req.channel!r} has no gateway in this deployment (BEACON_SERVED_CHANNELS: "
            f"{', '.join(settings.api.served_channels)}): nothing would deliver the message"
        )
    if req.kind == "template" and req.channel not in WINDOWED_CHANNELS:
        found.append(
            f"kind template is a WhatsApp template; {req.channel} has none and no window: send kind text instead"
        )
    if req.kind == "text" and not req.text:
        found.append("kind text needs `text`")
    if req.text and units(req.text) > text_limit(req.channel):
        found.append(
            f"`text` is {units(req.text)} UTF-16 units long, over the {text_limit(req.channel)} a {req.channel} "
            "message carries: send it as several messages"
        )
    if req.kind in {"template", "interactive"}:
        if not req.payload:
            found.append(f"kind {req.kind} needs `payload` (JSON of the Cloud API {req.kind} object)")
        else:
            try:
                if not isinstance(json.loads(req.payload), dict):
                    found.append("`payload` must be a JSON object")
            except ValueError as exc:
                found.append(f"`payload` is not JSON: {exc}")
    if req.kind in {"image", "audio", "video", "document", "sticker"} and not (
        req.media and (req.media.id or req.media.link)
    ):
        found.append(f"kind {req.kind} needs `media` with an id or a link")
    if req.kind == "location" and req.location is None:
        found.append("kind location needs `location`")
    if req.kind not in {
        "text",
        "template",
        "interactive",
        "image",
        "audio",
        "video",
        "document",
        "sticker",
        "location",
    }:
        found.append(f"kind {req.kind!r} cannot be sent proactively")
    if found:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, detail="; ".join(found))


def _same_content(stored: BeaconMessage, msg: BeaconMessage) -> bool:
    """Whether a stored message says what ``msg`` says, to the same user (a repeated send, not a new one)."""
    fields = ("user_key", "direction", "kind", "text", "media", "location", "payload")
    return all(getattr(stored, name) == getattr(msg, name) for name in fields)


@router.post(
    "/v1/messages/send",
    response_model=SendResult,
    status_code=status.HTTP_202_ACCEPTED,
    summary="Send a proactive message: validated, checked against the 24-hour window, produced to bm_out.",
    responses=problems(
        400,
        401,
        409,
        413,
        422,
        503,
        c409="Refused: outside the customer-service window, the user opted out, or the id was used before for "
        "a different message (the gateway would drop it as a duplicate). The same id with the same content is "
        "accepted again (idempotent: the gateway sends it once).",
        c422="Invalid: the detail says why (a field too long, a channel this deployment does not serve, a text "
        "over the channel's limit, a missing field for the kind).",
    ),
)
async def send_message(req: SendRequest, state: StateDep) -> SendResult:
    """Produce a proactive message to ``bm_out``. Texts over the channel's limit (4,096 for WhatsApp) are
    refused with 422, not split: the caller decides where a message of its own breaks."""
    _validate(req, state.settings)
    from beacon.codec import retry_registry

    settings = state.settings
    user_key = make_user_key(req.channel, req.account, req.user_id)
    now = utcnow()
    msg = BeaconMessage(
        id=req.id or str(uuid.uuid4()),
        user_key=user_key,
        channel=req.channel,
        account=req.account,
        user_id=req.user_id,
        direction=OUTBOUND,
        kind=req.kind,
        text=req.text,
        media=req.media,
        location=req.location,
        payload=req.payload,
        metadata={**req.metadata, "origin": "api-proactive"},
    )
    found = message_problems(msg)
    if found:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, detail="; ".join(found))
    async with state.sessions() as session:
        user = await store.get_user(session, user_key)
        stored = await store.get_message(session, msg.id)
    if user is not None and user.opted_out:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=f"user {user_key} opted out of messages")
    allowed, refused = apply_window(settings, [msg], store.utc(user.last_inbound_at) if user else None, now)
    if refused:
        metrics.PROACTIVE.labels("refused").inc()
        raise HTTPException(status.HTTP_409_CONFLICT, detail=f"not sent to {user_key}: {refused[0].reason}")
    msg = allowed[0]
    if stored is not None and not _same_content(stored, msg):
        metrics.PROACTIVE.labels("refused").inc()
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            detail=f"id {msg.id!r} was used before for a different message (to {stored.user_key}, kind "
            f"{stored.kind}): the gateway sends each id once, so this one would be dropped; use a new id",
        )
    try:
        value = await asyncio.wait_for(retry_registry(state.codec.encode, msg, settings.topics.outbound),
                                       _REGISTRY_WAIT)
    except TimeoutError as exc:
        metrics.PROACTIVE.labels("failed").inc()
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            detail=f"schema registry {settings.registry.url} did not answer within {_REGISTRY_WAIT:g}s; "
            "message not sent, retry",
            headers={"Retry-After": str(settings.api.retry_after)},
        ) from exc
    try:
        # Its own trace (beacon.trace): the gateway adds the hops from bm_out to the channel's send.
        record = await state.producer.produce(settings.topics.outbound, value, key=user_key,
                                              headers=with_channel(msg, record_headers("", msg.trace_id,
                                                                                      new_span_id())))
    except KafkaError as exc:
        metrics.PROACTIVE.labels("failed").inc()
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            detail=f"message not sent, retry: {exc}",
            headers={"Retry-After": str(settings.api.retry_after)},
        ) from exc
    async with state.write_lock, state.sessions.begin() as session:
        await store.touch_user(session, msg, now, inbound=False)
        await store.record_outbound(session, msg, now)
    metrics.PROACTIVE.labels("sent").inc()
    log.info("proactive %s message %s to %s produced to %s", msg.kind, msg.id, user_key, settings.topics.outbound)
    return SendResult(message=msg, topic=record.topic(), partition=record.partition(), offset=record.offset())
