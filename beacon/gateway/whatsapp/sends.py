"""Outbound BeaconMessages -> Cloud API ``/messages`` request bodies.

Each send carries the BeaconMessage id as ``biz_opaque_callback_data``, so its status webhooks
name the message they are about.
"""

from __future__ import annotations

from typing import Any

import orjson

from beacon.gateway.channel import UnsendableMessageError
from beacon.gateway.whatsapp.parse import MEDIA_TYPES
from beacon.messages import BeaconMessage

Json = dict[str, Any]

__all__ = ["UnsendableMessageError", "build_request", "recipient"]


def recipient(user_id: str) -> str:
    """``to`` as the Cloud API likes it: ``+`` and the full number (business-scoped ids as they are)."""
    return f"+{user_id}" if user_id.isdigit() else user_id


def _json_payload(msg: BeaconMessage) -> Json:
    if not msg.payload:
        raise UnsendableMessageError(f"outbound {msg.kind} message {msg.id} has no payload")
    try:
        obj = orjson.loads(msg.payload)
    except orjson.JSONDecodeError as exc:
        raise UnsendableMessageError(f"outbound {msg.kind} message {msg.id} has a payload that is not JSON") from exc
    if not isinstance(obj, dict):
        raise UnsendableMessageError(f"outbound {msg.kind} message {msg.id}: payload is not a JSON object")
    return obj


def build_request(msg: BeaconMessage) -> Json:
    """The request body for one outbound message."""
    if msg.kind == "read_receipt":
        if not msg.channel_message_id:
            raise UnsendableMessageError(f"read receipt {msg.id} names no message (channel_message_id)")
        body: Json = {"messaging_product": "whatsapp", "status": "read", "message_id": msg.channel_message_id}
        if msg.metadata.get("typing") == "true":
            body["typing_indicator"] = {"type": "text"}
        return body
    body = {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": recipient(msg.user_id),
        "type": msg.kind,
        "biz_opaque_callback_data": msg.id,
    }
    if msg.kind == "text":
        if not msg.text:
            raise UnsendableMessageError(f"outbound text message {msg.id} has no text")
        body["text"] = {"body": msg.text, "preview_url": msg.metadata.get("preview_url") == "true"}
    elif msg.kind in MEDIA_TYPES:
        media = msg.media
        if media is None or not (media.id or media.link):
            raise UnsendableMessageError(f"outbound {msg.kind} message {msg.id} has no media id or link")
        obj: Json = {"id": media.id} if media.id else {"link": media.link}
        if media.caption and msg.kind != "sticker" and msg.kind != "audio":
            obj["caption"] = media.caption
        if media.filename and msg.kind == "document":
            obj["filename"] = media.filename
        body[msg.kind] = obj
    elif msg.kind in {"interactive", "template"}:
        body[msg.kind] = _json_payload(msg)
    elif msg.kind == "reaction":
        if msg.reaction is None or not msg.reaction.target_id:
            raise UnsendableMessageError(f"outbound reaction {msg.id} names no message")
        body["reaction"] = {"message_id": msg.reaction.target_id, "emoji": msg.reaction.emoji}
    elif msg.kind == "location":
        if msg.location is None:
            raise UnsendableMessageError(f"outbound location {msg.id} has no location")
        body["location"] = msg.location.model_dump(exclude_none=True)
    elif msg.kind == "contacts":
        if not msg.payload:
            raise UnsendableMessageError(f"outbound contacts {msg.id} has no payload")
        body["contacts"] = orjson.loads(msg.payload)
    else:
        raise UnsendableMessageError(f"outbound message {msg.id} has kind {msg.kind!r}, which WhatsApp cannot send")
    if msg.quoted_channel_message_id:
        body["context"] = {"message_id": msg.quoted_channel_message_id}
    return body
