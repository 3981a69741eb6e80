"""Cloud API webhook payloads as Meta sends them: envelope, batched changes, every message type.

Serialised like Meta's (``encode``): compact JSON with non-ASCII escaped as ``\\uXXXX``, so a
signature check that re-serialises instead of hashing the raw bytes fails here too.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from typing import Any

Json = dict[str, Any]

WABA_ID = "102290129340398"
DEFAULT_PHONE_NUMBER_ID = "106540352242922"
DEFAULT_DISPLAY_NUMBER = "15550783881"


def new_wamid() -> str:
    """A fresh id shaped like Meta's (``wamid.`` + base64)."""
    return "wamid." + base64.b64encode(b"\x15\x02\x00\x11\x18\x12" + uuid.uuid4().bytes).decode()


def encode(payload: Json) -> bytes:
    """Meta's serialisation: compact, non-ASCII escaped as \\uXXXX."""
    return json.dumps(payload, ensure_ascii=True, separators=(",", ":")).encode()


def envelope(values: list[Json], *, waba_id: str = WABA_ID) -> Json:
    """One notification carrying ``values`` as separate changes of one entry."""
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": waba_id, "changes": [{"value": v, "field": "messages"} for v in values]}],
    }


def value(
    *,
    phone_number_id: str = DEFAULT_PHONE_NUMBER_ID,
    messages: list[Json] | None = None,
    statuses: list[Json] | None = None,
    contacts: list[Json] | None = None,
) -> Json:
    """A change value with metadata and whichever of messages / statuses / contacts are given."""
    v: Json = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": DEFAULT_DISPLAY_NUMBER, "phone_number_id": phone_number_id},
    }
    if contacts is not None:
        v["contacts"] = contacts
    if messages is not None:
        v["messages"] = messages
    if statuses is not None:
        v["statuses"] = statuses
    return v


def contact(wa_id: str, name: str | None = None) -> Json:
    return {"profile": {"name": name or f"User {wa_id[-4:]}"}, "wa_id": wa_id}


def message(from_: str, mtype: str, body: Any, *, wamid: str | None = None, context: Json | None = None,
            timestamp: int | None = None) -> Json:
    """An inbound message of type ``mtype`` whose type object is ``body``."""
    m: Json = {
        "from": from_,
        "id": wamid or new_wamid(),
        "timestamp": str(timestamp if timestamp is not None else int(time.time())),
        "type": mtype,
    }
    if body is not None:
        m[mtype] = body
    if context is not None:
        m["context"] = context
    return m


def text_message(from_: str, text: str, **kw: Any) -> Json:
    return message(from_, "text", {"body": text}, **kw)


#: One example body for every message type in the reference (and a few it says to tolerate).
EXAMPLE_BODIES: dict[str, Any] = {
    "text": {"body": "Hello, café ☕"},
    "image": {"caption": "a photo", "mime_type": "image/jpeg", "sha256": "abc=", "id": "1479537139650973"},
    "video": {"mime_type": "video/mp4", "sha256": "def=", "id": "2479537139650973"},
    "audio": {"mime_type": "audio/ogg; codecs=opus", "sha256": "ghi=", "id": "3479537139650973", "voice": True},
    "document": {"caption": "the doc", "filename": "report.pdf", "mime_type": "application/pdf",
                 "sha256": "jkl=", "id": "4479537139650973"},
    "sticker": {"mime_type": "image/webp", "sha256": "mno=", "id": "5479537139650973", "animated": False},
    "location": {"latitude": 51.5072, "longitude": -0.1276, "name": "London", "address": "Trafalgar Sq"},
    "contacts": [{"name": {"formatted_name": "Ada Lovelace", "first_name": "Ada"},
                  "phones": [{"phone": "+44 7700 900123", "type": "CELL", "wa_id": "447700900123"}]}],
    "interactive": {"type": "button_reply", "button_reply": {"id": "yes-1", "title": "Yes"}},
    "button": {"payload": "STOP_PROMOS", "text": "Stop promotions"},
    "reaction": {"message_id": "wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBJDQjZCMzlEQUE4OTJBMTE4RTUA", "emoji": "👍"},
    "order": {"catalog_id": "123", "product_items": [{"product_retailer_id": "sku-1", "quantity": 2,
                                                        "item_price": 9.5, "currency": "EUR"}]},
    "system": {"body": "User changed number", "wa_id": "447700900999", "type": "user_changed_number"},
}
LIST_REPLY = {"type": "list_reply", "list_reply": {"id": "row-2", "title": "Option 2", "description": "Second"}}
UNSUPPORTED_MESSAGE_ERRORS = [{"code": 131051, "title": "Message type unknown",
                               "message": "Message type unknown", "error_data": {"details": "not supported"}}]


def status(wamid: str, state: str, recipient: str, *, errors: list[Json] | None = None,
           opaque: str | None = None, timestamp: int | None = None) -> Json:
    """A status of a message we sent (with conversation and pricing as Meta sends them)."""
    s: Json = {
        "id": wamid,
        "status": state,
        "timestamp": str(timestamp if timestamp is not None else int(time.time())),
        "recipient_id": recipient,
    }
    if state in {"sent", "delivered", "read"}:
        s["conversation"] = {"id": "CONVERSATION_ID", "origin": {"type": "service"}}
        s["pricing"] = {"billable": True, "pricing_model": "CBP", "category": "service"}
    if errors is not None:
        s["errors"] = errors
    if opaque is not None:
        s["biz_opaque_callback_data"] = opaque
    return s


def text_webhook(from_: str, text: str, *, name: str | None = None,
                 phone_number_id: str = DEFAULT_PHONE_NUMBER_ID, wamid: str | None = None) -> Json:
    """A whole notification: one user writing one text."""
    return envelope([value(phone_number_id=phone_number_id, contacts=[contact(from_, name)],
                           messages=[text_message(from_, text, wamid=wamid)])])


def button_webhook(from_: str, reply_id: str, title: str, *, name: str | None = None,
                   phone_number_id: str = DEFAULT_PHONE_NUMBER_ID, wamid: str | None = None) -> Json:
    """A whole notification: one user tapping the reply button ``reply_id``."""
    body = {"type": "button_reply", "button_reply": {"id": reply_id, "title": title}}
    return envelope([value(phone_number_id=phone_number_id, contacts=[contact(from_, name)],
                           messages=[message(from_, "interactive", body, wamid=wamid)])])


def status_webhook(wamid: str, state: str, recipient: str, *, phone_number_id: str = DEFAULT_PHONE_NUMBER_ID,
                   errors: list[Json] | None = None, opaque: str | None = None) -> Json:
    return envelope([value(phone_number_id=phone_number_id,
                           statuses=[status(wamid, state, recipient, errors=errors, opaque=opaque)])])


# --- events: what a user did, not what they asked --------------------------------------------------
# Shapes from Meta's webhook reference (developers.facebook.com/documentation/business-messaging/whatsapp/
# webhooks/reference/messages/edit, /revoke, /system) and, for call_permission_reply, the types of
# whatsapp-api-js (ServerInteractiveCallPermissionMessage); the 131000 interactive from Cloud API bodies
# that carry a message-level ``errors`` array instead of the type's object.

SOMETHING_WENT_WRONG = [{"code": 131000, "title": "Something went wrong", "message": "Something went wrong",
                         "error_data": {"details": "Message failed to be processed"}}]


def edit_message(from_: str, original_wamid: str, text: str, **kw: Any) -> Json:
    """The user edited their text ``original_wamid``; ``text`` is what it says now."""
    return message(from_, "edit", {"original_message_id": original_wamid,
                                   "message": {"type": "text", "text": {"body": text}}}, **kw)


def revoke_message(from_: str, original_wamid: str, **kw: Any) -> Json:
    """The user deleted their message ``original_wamid``."""
    return message(from_, "revoke", {"original_message_id": original_wamid}, **kw)


def number_change_message(from_: str, new_wa_id: str, name: str = "User", **kw: Any) -> Json:
    """The user changed their number from ``from_`` to ``new_wa_id`` (sent without a contacts array)."""
    return message(from_, "system", {"body": f"User {name} changed from {from_} to {new_wa_id}",
                                     "wa_id": new_wa_id, "type": "user_changed_number"}, **kw)


def call_permission_reply_message(from_: str, response: str = "accept", **kw: Any) -> Json:
    """The user answered a call permission request (``accept`` or ``reject``)."""
    reply = {"response": response, "is_permanent": False, "expiration_timestamp": int(time.time()) + 7 * 86400,
             "response_source": "user_action"}
    return message(from_, "interactive", {"type": "call_permission_reply", "call_permission_reply": reply}, **kw)


def interactive_error_message(from_: str, **kw: Any) -> Json:
    """An interactive reply Meta could not deliver: no ``interactive`` object, a 131000 error instead."""
    m = message(from_, "interactive", None, **kw)
    m["errors"] = SOMETHING_WENT_WRONG
    return m


#: What ``event_webhook`` builds, by name (the fake's ``POST /_fake/event`` takes these names).
EVENTS = ("edit", "revoke", "user_changed_number", "call_permission_reply", "interactive_error")


def event_webhook(event: str, from_: str, *, original: str | None = None, text: str | None = None,
                  new_wa_id: str | None = None, response: str = "accept", wamid: str | None = None,
                  phone_number_id: str = DEFAULT_PHONE_NUMBER_ID) -> Json:
    """A whole notification carrying one event of ``EVENTS`` from ``from_``."""
    if event == "edit":
        m = edit_message(from_, original or new_wamid(), text or "", wamid=wamid)
    elif event == "revoke":
        m = revoke_message(from_, original or new_wamid(), wamid=wamid)
    elif event == "user_changed_number":
        m = number_change_message(from_, new_wa_id or "447700900999", wamid=wamid)
        return envelope([value(phone_number_id=phone_number_id, messages=[m])])
    elif event == "call_permission_reply":
        m = call_permission_reply_message(from_, response, wamid=wamid)
    elif event == "interactive_error":
        m = interactive_error_message(from_, wamid=wamid)
    else:
        raise ValueError(f"unknown event {event!r}; known: {', '.join(EVENTS)}")
    return envelope([value(phone_number_id=phone_number_id, contacts=[contact(from_)], messages=[m])])
