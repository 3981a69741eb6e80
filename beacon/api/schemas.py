"""Request and response bodies of the API (the OpenAPI document is the contract)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, Field, WithJsonSchema

from beacon.messages import BeaconMessage, Location, Media


class Problem(BaseModel):
    """Why a request was refused or not done."""

    detail: str | list[dict[str, Any]] = Field(
        description="What is wrong and what to do: a sentence, or for a request that does not match this "
        "document the list of fields at fault (FastAPI's validation errors: loc, msg, type)."
    )


#: What each error status means, for the ``responses`` of the routes (the OpenAPI document is the contract).
ERROR_MEANINGS = {
    400: "The body could not be read (not JSON, or broken off).",
    401: "Missing or wrong service token (checked before the body is read).",
    404: "No such user.",
    409: "Conflict (see the route).",
    413: "Body larger than BEACON_API_MAX_BODY_BYTES (refused before it is read).",
    422: "Invalid request: the detail says which field and why (permanent: do not retry as is).",
    500: "Failed: the detail says why (retrying may help a few times; past that, set the request aside).",
    503: "The database (or the broker or registry, for sends) is unavailable: retry after Retry-After seconds.",
}

RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before retrying.", "schema": {"type": "integer"}}}


def problems(*codes: int, **meanings: str) -> dict[int | str, dict[str, Any]]:
    """The ``responses`` entries of a route's error statuses; ``meanings`` (``c409="..."``) override."""
    out: dict[int | str, dict[str, Any]] = {}
    for code in codes:
        entry: dict[str, Any] = {"model": Problem, "description": meanings.get(f"c{code}", ERROR_MEANINGS[code])}
        if code == 503:
            entry["headers"] = RETRY_AFTER
        out[code] = entry
    return out


class RefusedReply(BaseModel):
    message_id: str
    reason: str


class ProcessResult(BaseModel):
    """What the processing endpoint answers."""

    message_id: str
    duplicate: bool = Field(description="True when the message was processed before: the stored replies.")
    replies: list[BeaconMessage] = Field(description="Outbound messages to produce to bm_out, in order.")
    refused: list[RefusedReply] = Field(
        default_factory=list, description="Replies not sent (outside the customer-service window)."
    )


#: Most messages one batch request may carry.
MAX_BATCH = 500


class BatchRequest(BaseModel):
    """Messages of different users to process in one request."""

    messages: Annotated[
        list[dict[str, Any]],
        WithJsonSchema(
            {"type": "array", "items": {"$ref": "#/components/schemas/BeaconMessage"}, "maxItems": MAX_BATCH}
        ),
    ] = Field(
        max_length=MAX_BATCH,
        description="At most one message per user. Each is validated on its own: one that is not a valid "
        "BeaconMessage gets a 422 line, the others are processed.",
    )
    traceparents: list[str] | None = Field(
        None,
        max_length=MAX_BATCH,
        description="W3C `traceparent` of each message's worker hop, by position (tracing: the API's spans are "
        "their children). In the body, not a header: a batch of hundreds outgrows HTTP header limits.",
    )


class BatchItem(BaseModel):
    """One line of the batch answer."""

    index: int = Field(description="Position of the message in the request.")
    status: int = Field(
        description="What /v1/messages/process would have answered: 200, 422 (refused: dead-letter it), 500 (failed: "
        "retry a few times, then dead-letter it) or 503 (a dependency is down: retry after a pause)."
    )
    result: ProcessResult | None = Field(None, description="Set when status is 200.")
    detail: str | None = Field(None, description="Why not, when status is not 200.")
    timing: dict[str, float] | None = Field(
        None, description="Milliseconds spent on the message inside the API (`db`, `pipeline`), as the single "
        "endpoint's `Server-Timing` header gives them; set when status is 200."
    )


class UserOut(BaseModel):
    user_key: str
    channel: str
    account: str
    user_id: str
    profile_name: str | None
    first_seen: datetime
    last_seen: datetime
    last_inbound_at: datetime | None
    opted_out: bool
    conversation_id: str
    window_open: bool = Field(
        description="Whether a free-form message may be sent now: always true outside WhatsApp, whose 24-hour "
        "customer-service window is the only one Beacon applies."
    )
    new_user_id: str | None = Field(
        None,
        description="The user's new id on the channel after they changed it (WhatsApp: a new number). The user "
        "key stays the old one; the user's later messages arrive under the new id's key, as a new user.",
    )
    handoff: str | None = Field(
        None,
        description="None: the bot answers. `waiting`: the user (`/human`) or the bot asked for a person, none has "
        "taken over yet. `operator`: a person answers (`PUT .../handoff`); the bot stays silent either way.",
    )
    handoff_by: str | None = Field(None, description="Who made the last handoff change: user, agent, bot, an operator.")
    handoff_reason: str | None = None
    handoff_at: datetime | None = Field(None, description="When the last handoff change happened.")


class HandoffRequest(BaseModel):
    operator: str = Field(min_length=1, max_length=255, description="Who takes over (shown in the timeline).")
    reason: str | None = Field(None, max_length=1000, description="Why, for the timeline.")


class OptOut(BaseModel):
    opted_out: bool = Field(description="True: refuse proactive messages to this user.")


class StoredMessage(BaseModel):
    message: BeaconMessage = Field(description="As last edited by the user (edits rewrite it).")
    delivery_status: str | None = None
    edited_at: datetime | None = Field(None, description="When the user last edited this message.")
    deleted_at: datetime | None = Field(None, description="When the user deleted this message.")
    delivery_updated_at: datetime | None = Field(None, description="When the delivery status last changed.")


class UserList(BaseModel):
    """Users found by a search, most recently seen first."""

    query: str
    users: list[UserOut]


class MessagePage(BaseModel):
    user_key: str
    messages: list[StoredMessage] = Field(description="Newest first.")
    next_before: str | None = Field(
        None,
        description="Opaque cursor (the last message's created_at, seq and id): pass it as `before` for the next, "
        "older page; null at the end. Unique, so messages sharing a created_at are neither skipped nor repeated.",
    )


class SendRequest(BaseModel):
    """A proactive message to one user."""

    channel: str = Field("whatsapp", description="whatsapp, telegram, webchat, ...: one in BEACON_SERVED_CHANNELS.")
    account: str = Field(description="The business account (WhatsApp: phone number id; Telegram: bot id).")
    user_id: str = Field(description="The user (WhatsApp: wa_id; Telegram: chat id; web chat: visitor id).")
    kind: str = Field(
        "text",
        description="text, template (WhatsApp only), image, audio, video, document, sticker, location, interactive",
    )
    text: str | None = None
    media: Media | None = None
    location: Location | None = None
    payload: str | None = Field(None, description="JSON of the template or interactive object.")
    id: str | None = Field(None, description="Your id for the message (idempotency); default a new uuid.")
    metadata: dict[str, str] = Field(default_factory=dict)


class SendResult(BaseModel):
    message: BeaconMessage
    topic: str
    partition: int
    offset: int
