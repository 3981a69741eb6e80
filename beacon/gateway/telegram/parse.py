"""Bot API Updates (webhook bodies) -> BeaconMessages.

One POST carries one Update. Handled: ``message`` and ``edited_message`` (text, photo, document,
voice, audio, video, animation, video note, location, venue, contact, sticker; captions) and
``callback_query`` (a tap on an inline button). Other content becomes ``unsupported`` with its
type in ``raw_type``; service messages and other update types are dropped with a reason.

Ids are stable: a message derives its id from (bot, chat, message_id), an edit from (bot,
update_id), a button press from (bot, callback query id), so an Update Telegram redelivers
(it retries until it gets a 2xx) yields the same ids and is answered once.

An edit is marked ``metadata["telegram.edited"] = "true"`` and keeps the kind of its content
(a dedicated event kind is to come for every channel).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from beacon.errors import BeaconError
from beacon.gateway.channel import MalformedRequestError
from beacon.gateway.telegram import CHANNEL
from beacon.messages import INBOUND, BeaconMessage, InteractiveReply, Location, Media, make_user_key, stable_id

Json = dict[str, Any]

#: Update types Beacon handles (``setWebhook``'s ``allowed_updates``).
HANDLED_UPDATES = ("message", "edited_message", "callback_query")
#: Media fields of a Message in the order they are looked for (an animation also carries ``document``).
MEDIA_FIELDS: tuple[tuple[str, str], ...] = (
    ("animation", "video"),
    ("video", "video"),
    ("video_note", "video"),
    ("voice", "audio"),
    ("audio", "audio"),
    ("sticker", "sticker"),
    ("document", "document"),
)
#: Content a person sends that Beacon has no typed form for: kept as ``unsupported``.
UNSUPPORTED_CONTENT = ("poll", "dice", "game", "story", "invoice", "paid_media", "giveaway", "checklist")
#: Service messages (someone joined, the title changed, a message was pinned...): not a user's message.
SERVICE_FIELDS = (
    "new_chat_members", "left_chat_member", "new_chat_title", "new_chat_photo", "delete_chat_photo",
    "group_chat_created", "supergroup_chat_created", "channel_chat_created", "message_auto_delete_timer_changed",
    "migrate_to_chat_id", "migrate_from_chat_id", "pinned_message", "successful_payment", "users_shared",
    "chat_shared", "write_access_allowed", "forum_topic_created", "forum_topic_edited", "forum_topic_closed",
    "forum_topic_reopened", "video_chat_started", "video_chat_ended", "video_chat_scheduled",
    "video_chat_participants_invited", "boost_added", "proximity_alert_triggered",
)


class MalformedUpdateError(MalformedRequestError):
    """The body is not JSON or not an Update (answer 400)."""

    status = 400


@dataclass(frozen=True)
class Dropped:
    """Part of an Update left out, and why (bounded, safe to log)."""

    what: str  #: the update type, e.g. "message", "channel_post"
    reason: str
    update_id: int | None = None


@dataclass
class ParsedUpdate:
    """What one Update yields: the messages kept, what was dropped, and a button press to answer."""

    update_id: int | None = None
    messages: list[BeaconMessage] = field(default_factory=list)
    dropped: list[Dropped] = field(default_factory=list)
    #: ``callback_query.id`` when the Update is a button press: answer it with ``answerCallbackQuery``.
    callback_query_id: str | None = None


class _Drop(BeaconError):
    """Internal: this part of the Update cannot be kept (the reason is the message)."""


def message_id(bot_id: str, chat_id: str, channel_message_id: str) -> str:
    """BeaconMessage id of an inbound message (a message_id is unique only within its chat)."""
    return stable_id(CHANNEL, bot_id, chat_id, channel_message_id)


def parse_update(body: bytes, bot_id: str) -> ParsedUpdate:
    """Parse one webhook body for the bot ``bot_id``; MalformedUpdateError when it is not an Update."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise MalformedUpdateError(f"body is not JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise MalformedUpdateError("body is not a JSON object")
    update_id = doc.get("update_id")
    if not isinstance(update_id, int) or isinstance(update_id, bool):
        raise MalformedUpdateError("body has no integer update_id, so it is not a Bot API Update")
    out = ParsedUpdate(update_id=update_id)
    kinds = [k for k in doc if k != "update_id"]
    if not kinds:
        out.dropped.append(Dropped("update", "the Update carries nothing", update_id))
    for kind in kinds:
        obj = doc[kind]
        try:
            if kind == "message":
                out.messages.append(_parse_message(_obj(obj, kind), bot_id, update_id, edited=False))
            elif kind == "edited_message":
                out.messages.append(_parse_message(_obj(obj, kind), bot_id, update_id, edited=True))
            elif kind == "callback_query":
                query = _obj(obj, kind)
                if isinstance(query.get("id"), str) and query["id"]:
                    out.callback_query_id = query["id"]
                out.messages.append(_parse_callback(query, bot_id))
            else:
                raise _Drop(f"update type {kind[:64]!r} is not handled (Beacon asks only for "
                            f"{', '.join(HANDLED_UPDATES)})")
        except (_Drop, ValueError, TypeError, KeyError) as exc:
            reason = str(exc) if isinstance(exc, _Drop) else f"{type(exc).__name__}: {exc}"
            out.dropped.append(Dropped(kind[:64], reason[:200], update_id))
    return out


def _obj(value: Any, what: str) -> Json:
    if not isinstance(value, dict):
        raise _Drop(f"{what} is not an object")
    return value


def _str(value: Any) -> str | None:
    return None if value is None else str(value)


def _int_id(value: Any, what: str) -> str:
    if not isinstance(value, int) or isinstance(value, bool):
        raise _Drop(f"{what} is missing or not an integer")
    return str(value)


def _timestamp(value: Any) -> datetime | None:
    if not isinstance(value, int) or isinstance(value, bool):
        return None
    try:
        return datetime.fromtimestamp(value, UTC)
    except (ValueError, OverflowError, OSError):
        return None


def _name(user: Any) -> str | None:
    """A person's display name: first and last name, else the username."""
    if not isinstance(user, dict):
        return None
    name = " ".join(str(user[k]) for k in ("first_name", "last_name") if user.get(k))
    return name or _str(user.get("username"))


def _common_meta(msg: Json, chat: Json) -> dict[str, str]:
    meta: dict[str, str] = {}
    if chat.get("type"):
        meta["telegram.chat_type"] = str(chat["type"])
    sender = msg.get("from")
    if isinstance(sender, dict) and isinstance(sender.get("id"), int):
        meta["telegram.from_id"] = str(sender["id"])
        if sender.get("username"):
            meta["telegram.username"] = str(sender["username"])
    return meta


def _parse_message(msg: Json, bot_id: str, update_id: int, *, edited: bool) -> BeaconMessage:
    chat = _obj(msg.get("chat"), "message.chat")
    chat_id = _int_id(chat.get("id"), "message.chat.id")
    mid = _int_id(msg.get("message_id"), "message.message_id")
    service = next((f for f in SERVICE_FIELDS if f in msg), None)
    if service is not None:
        raise _Drop(f"service message ({service}) in chat {chat_id}: not something a person wrote")
    fields, kind, content_meta = _content(msg)
    meta = _common_meta(msg, chat) | content_meta
    if edited:
        meta["telegram.edited"] = "true"
    reply = msg.get("reply_to_message")
    if isinstance(reply, dict) and isinstance(reply.get("message_id"), int):
        fields["quoted_channel_message_id"] = str(reply["message_id"])
    if msg.get("forward_origin") or msg.get("forward_date"):
        meta["forwarded"] = "true"
    if msg.get("media_group_id"):  # one photo of an album: its siblings share the id
        meta["telegram.media_group_id"] = str(msg["media_group_id"])[:64]
    # an edit keeps the message's message_id: its id comes from the update, so each edit is its own message
    beacon_id = stable_id(CHANNEL, bot_id, "edit", str(update_id)) if edited else message_id(bot_id, chat_id, mid)
    return BeaconMessage(
        id=beacon_id,
        user_key=make_user_key(CHANNEL, bot_id, chat_id),
        channel=CHANNEL,
        account=bot_id,
        user_id=chat_id,
        direction=INBOUND,
        kind=kind,
        profile_name=_name(msg.get("from")) or _str(chat.get("title")),
        channel_message_id=mid,
        channel_timestamp=_timestamp(msg.get("edit_date") if edited else msg.get("date")) or _timestamp(
            msg.get("date")),
        metadata=meta,
        **fields,
    )


#: Media fields that also set a metadata flag (as WhatsApp's parser does for voice notes and animations).
MEDIA_FLAGS = {"voice": "voice", "animation": "animated", "video_note": "video_note"}


def _content(msg: Json) -> tuple[dict[str, Any], str, dict[str, str]]:
    """The content fields of a Message, its kind and metadata about the content."""
    caption = _str(msg.get("caption"))
    if isinstance(msg.get("text"), str):
        return {"text": msg["text"]}, "text", {}
    photo = msg.get("photo")
    if isinstance(photo, list) and photo:
        sizes = [s for s in photo if isinstance(s, dict) and s.get("file_id")]
        if sizes:
            largest = max(sizes, key=lambda s: (int(s.get("width") or 0) * int(s.get("height") or 0),
                                                int(s.get("file_size") or 0)))
            return {"media": Media(id=str(largest["file_id"]), mime_type="image/jpeg", caption=caption)}, "image", {}
    for name, kind in MEDIA_FIELDS:
        obj = msg.get(name)
        if isinstance(obj, dict) and obj.get("file_id"):
            media = Media(id=str(obj["file_id"]), mime_type=_str(obj.get("mime_type")),
                          caption=caption if kind != "sticker" else None, filename=_str(obj.get("file_name")))
            fields: dict[str, Any] = {"media": media}
            if name == "sticker" and obj.get("emoji"):
                fields["text"] = str(obj["emoji"])
            return fields, kind, {MEDIA_FLAGS[name]: "true"} if name in MEDIA_FLAGS else {}
    venue = msg.get("venue")
    location = venue.get("location") if isinstance(venue, dict) else msg.get("location")
    if isinstance(location, dict):
        place = venue if isinstance(venue, dict) else {}
        return {"location": Location(latitude=float(location["latitude"]), longitude=float(location["longitude"]),
                                     name=_str(place.get("title")), address=_str(place.get("address")))}, "location", {}
    contact = msg.get("contact")
    if isinstance(contact, dict):
        return {"payload": _contacts_payload(contact)}, "contacts", {}
    raw = next((f for f in UNSUPPORTED_CONTENT if f in msg), None) or next(
        (k for k in msg if k not in _ENVELOPE), "unknown")
    content = msg.get(raw)
    return {"raw_type": raw[:64], "payload": _json_text(content if content is not None else {})}, "unsupported", {}


#: Message fields that describe the envelope, not the content.
_ENVELOPE = frozenset({
    "message_id", "message_thread_id", "from", "sender_chat", "sender_boost_count", "sender_business_bot", "date",
    "business_connection_id", "chat", "forward_origin", "is_topic_message", "is_automatic_forward",
    "reply_to_message", "external_reply", "quote", "reply_to_story", "via_bot", "edit_date", "has_protected_content",
    "is_from_offline", "media_group_id", "author_signature", "entities", "caption", "caption_entities",
    "show_caption_above_media", "has_media_spoiler", "link_preview_options", "reply_markup", "effect_id",
    "forward_date", "forward_from", "forward_from_chat", "forward_from_message_id", "forward_signature",
    "forward_sender_name",
})


def _contacts_payload(contact: Json) -> str:
    """A shared contact in the shape WhatsApp uses for ``contacts`` payloads, so the pipeline reads one form."""
    first, last = _str(contact.get("first_name")), _str(contact.get("last_name"))
    entry: Json = {"name": {"formatted_name": " ".join(x for x in (first, last) if x) or "",
                            "first_name": first, "last_name": last},
                   "phones": [{"phone": _str(contact.get("phone_number"))}] if contact.get("phone_number") else []}
    if isinstance(contact.get("user_id"), int):
        entry["telegram_user_id"] = contact["user_id"]
    if contact.get("vcard"):
        entry["vcard"] = str(contact["vcard"])
    return _json_text([entry])


def _json_text(obj: Any) -> str:
    try:
        return orjson.dumps(obj).decode()
    except (orjson.JSONEncodeError, TypeError) as exc:
        return orjson.dumps({"beacon_error": f"content not kept: {exc}"[:200]}).decode()


def _button_text(message: Any, data: str) -> str | None:
    """The text of the inline button whose ``callback_data`` is ``data``, when the message still shows it."""
    markup = message.get("reply_markup") if isinstance(message, dict) else None
    rows = markup.get("inline_keyboard") if isinstance(markup, dict) else None
    for row in rows if isinstance(rows, list) else []:
        for button in row if isinstance(row, list) else []:
            if isinstance(button, dict) and button.get("callback_data") == data:
                return _str(button.get("text"))
    return None


def _parse_callback(query: Json, bot_id: str) -> BeaconMessage:
    query_id = query.get("id")
    if not isinstance(query_id, str) or not query_id:
        raise _Drop("callback_query has no id, so a redelivery could not be recognised")
    sender = _obj(query.get("from"), "callback_query.from")
    message = query.get("message") if isinstance(query.get("message"), dict) else None
    chat = message.get("chat") if message is not None else None
    # a button under an inline-mode message has no chat: the private chat with the user has the user's id
    chat_id = _int_id(chat.get("id"), "callback_query.message.chat.id") if isinstance(chat, dict) else _int_id(
        sender.get("id"), "callback_query.from.id")
    meta = _common_meta({"from": sender}, chat if isinstance(chat, dict) else {})
    meta["telegram.callback_query_id"] = query_id
    fields: dict[str, Any] = {}
    data = query.get("data")
    if isinstance(data, str):
        kind = "interactive"
        fields["interactive_reply"] = InteractiveReply(type="button_reply", id=data, title=_button_text(message, data))
    else:
        kind = "unsupported"
        fields["raw_type"] = "callback_game" if query.get("game_short_name") else "callback_query"
        fields["payload"] = _json_text({k: v for k, v in query.items() if k != "message"})
    if message is not None and isinstance(message.get("message_id"), int):
        fields["quoted_channel_message_id"] = str(message["message_id"])
    return BeaconMessage(
        id=stable_id(CHANNEL, bot_id, "callback", query_id),
        user_key=make_user_key(CHANNEL, bot_id, chat_id),
        channel=CHANNEL,
        account=bot_id,
        user_id=chat_id,
        direction=INBOUND,
        kind=kind,
        profile_name=_name(sender),
        metadata=meta,
        **fields,
    )
