"""Outbound BeaconMessages -> Bot API calls (method + JSON parameters).

Buttons travel in ``payload`` as they do for WhatsApp (the Cloud API ``interactive`` object:
``action.buttons[].reply{id,title}`` or ``action.sections[].rows[]{id,title}``), or simply as
``{"buttons": [{"id", "title"}]}``; each becomes an inline keyboard button whose
``callback_data`` is the id, so the press comes back as an interactive reply with that id.
A text longer than Telegram's 4096 characters is sent as several messages, in order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from beacon.errors import BeaconError
from beacon.messages import BeaconMessage

Json = dict[str, Any]

MAX_TEXT = 4096  #: characters of one sendMessage text
MAX_CAPTION = 1024  #: characters of one media caption
MAX_CALLBACK_DATA = 64  #: bytes of an inline button's callback_data
MEDIA_METHODS = {"image": ("sendPhoto", "photo"), "document": ("sendDocument", "document"),
                 "video": ("sendVideo", "video"), "sticker": ("sendSticker", "sticker")}
VOICE_MIME_TYPES = frozenset({"audio/ogg", "audio/opus", "audio/ogg; codecs=opus"})


class UnsendableMessageError(BeaconError):
    """An outbound message that cannot become a Bot API call (dead-letter it); the text says why."""


@dataclass(frozen=True)
class BotCall:
    """One Bot API call: ``POST /bot<token>/<method>`` with ``params`` as the JSON body."""

    method: str
    params: Json = field(default_factory=dict)


def chat_id(user_id: str) -> int | str:
    """The ``chat_id`` parameter: the numeric chat id (negative for groups), or ``@channelusername``."""
    try:
        return int(user_id)
    except ValueError:
        return user_id


def build_calls(msg: BeaconMessage) -> list[BotCall]:
    """The Bot API calls that deliver one outbound message, in the order they must be made."""
    target = chat_id(msg.user_id)
    if msg.kind == "read_receipt" or msg.kind == "typing":
        # Telegram has no read receipts; the nearest sign of life is the typing indicator
        return [BotCall("sendChatAction", {"chat_id": target, "action": "typing"})]
    keyboard = _keyboard(msg)
    calls: list[BotCall]
    if msg.kind == "text":
        if not msg.text:
            raise UnsendableMessageError(f"outbound text message {msg.id} has no text")
        calls = [BotCall("sendMessage", {"chat_id": target, "text": part}) for part in _split(msg.text)]
    elif msg.kind == "interactive":
        text = _interactive_text(msg)
        if keyboard is None:
            raise UnsendableMessageError(f"outbound interactive message {msg.id} has no buttons or list rows")
        calls = [BotCall("sendMessage", {"chat_id": target, "text": part}) for part in _split(text)]
    elif msg.kind in MEDIA_METHODS or msg.kind == "audio":
        calls = _media_calls(msg, target)
    elif msg.kind == "location":
        if msg.location is None:
            raise UnsendableMessageError(f"outbound location {msg.id} has no location")
        calls = [BotCall("sendLocation", {"chat_id": target, "latitude": msg.location.latitude,
                                          "longitude": msg.location.longitude})]
    elif msg.kind == "contacts":
        calls = [_contact_call(msg, target)]
    elif msg.kind == "reaction":
        if msg.reaction is None or not msg.reaction.target_id.isdigit():
            raise UnsendableMessageError(f"outbound reaction {msg.id} names no Telegram message_id")
        emoji = [{"type": "emoji", "emoji": msg.reaction.emoji}] if msg.reaction.emoji else []
        return [BotCall("setMessageReaction", {"chat_id": target, "message_id": int(msg.reaction.target_id),
                                               "reaction": emoji})]
    else:
        raise UnsendableMessageError(f"outbound message {msg.id} has kind {msg.kind!r}, which Telegram cannot send"
                                     + (" (templates are WhatsApp's)" if msg.kind == "template" else ""))
    if msg.quoted_channel_message_id:
        if not msg.quoted_channel_message_id.isdigit():
            raise UnsendableMessageError(f"outbound message {msg.id} quotes {msg.quoted_channel_message_id!r}, "
                                         "which is not a Telegram message_id")
        calls[0].params["reply_parameters"] = {"message_id": int(msg.quoted_channel_message_id),
                                               "allow_sending_without_reply": True}
    if keyboard is not None:
        calls[-1].params["reply_markup"] = keyboard
    return calls


def _split(text: str) -> list[str]:
    return [text[i:i + MAX_TEXT] for i in range(0, len(text), MAX_TEXT)]


def _media_calls(msg: BeaconMessage, target: int | str) -> list[BotCall]:
    media = msg.media
    if media is None or not (media.id or media.link):
        raise UnsendableMessageError(f"outbound {msg.kind} message {msg.id} has no media id (file_id) or link")
    if msg.kind == "audio":
        voice = msg.metadata.get("voice") == "true" or (media.mime_type or "").lower() in VOICE_MIME_TYPES
        method, param = ("sendVoice", "voice") if voice else ("sendAudio", "audio")
    else:
        method, param = MEDIA_METHODS[msg.kind]
    params: Json = {"chat_id": target, param: media.id or media.link}
    calls = [BotCall(method, params)]
    caption = media.caption if msg.kind != "sticker" else None
    if caption and len(caption) <= MAX_CAPTION:
        params["caption"] = caption
    elif caption:  # too long for a caption: the text follows the media
        calls += [BotCall("sendMessage", {"chat_id": target, "text": part}) for part in _split(caption)]
    return calls


def _payload(msg: BeaconMessage) -> Json | None:
    if not msg.payload:
        return None
    try:
        obj = orjson.loads(msg.payload)
    except orjson.JSONDecodeError as exc:
        raise UnsendableMessageError(f"outbound {msg.kind} message {msg.id} has a payload that is not JSON") from exc
    if not isinstance(obj, dict):
        raise UnsendableMessageError(f"outbound {msg.kind} message {msg.id}: payload is not a JSON object")
    return obj


def _options(payload: Json) -> list[tuple[str, str]]:
    """(id, title) of every button or list row the payload offers."""
    raw_action = payload.get("action")
    action: Json = raw_action if isinstance(raw_action, dict) else {}
    found: list[Any] = list(payload.get("buttons") or [])
    found += [b.get("reply", b) for b in action.get("buttons") or [] if isinstance(b, dict)]
    for section in action.get("sections") or []:
        if isinstance(section, dict):
            found += list(section.get("rows") or [])
    return [(str(o["id"]), str(o.get("title") or o["id"])) for o in found if isinstance(o, dict) and o.get("id")]


def _keyboard(msg: BeaconMessage) -> Json | None:
    if msg.kind not in {"text", "interactive"}:
        return None
    payload = _payload(msg)
    options = _options(payload) if payload is not None else []
    if not options:
        return None
    for option_id, _ in options:
        if len(option_id.encode()) > MAX_CALLBACK_DATA:
            raise UnsendableMessageError(f"outbound message {msg.id}: button id {option_id[:20]!r}... is longer than "
                                         f"Telegram's {MAX_CALLBACK_DATA} bytes of callback_data")
    return {"inline_keyboard": [[{"text": title, "callback_data": option_id}] for option_id, title in options]}


def _interactive_text(msg: BeaconMessage) -> str:
    payload = _payload(msg) or {}
    parts: list[str] = []
    for key in ("header", "body", "footer"):
        part = payload.get(key)
        if isinstance(part, dict) and part.get("text"):
            parts.append(str(part["text"]))
    text = "\n\n".join(parts) or msg.text
    if not text:
        raise UnsendableMessageError(f"outbound interactive message {msg.id} has no text (body.text) to show")
    return text


def _contact_call(msg: BeaconMessage, target: int | str) -> BotCall:
    try:
        contacts = orjson.loads(msg.payload or "")
        first = contacts[0] if isinstance(contacts, list) else contacts
        name = first.get("name") or {}
        phone = (first.get("phones") or [{}])[0].get("phone")
        first_name = name.get("first_name") or name.get("formatted_name")
    except (orjson.JSONDecodeError, AttributeError, IndexError, KeyError, TypeError) as exc:
        raise UnsendableMessageError(f"outbound contacts {msg.id} has no readable contact in its payload") from exc
    if not phone or not first_name:
        raise UnsendableMessageError(f"outbound contacts {msg.id}: Telegram needs a phone number and a first name")
    params: Json = {"chat_id": target, "phone_number": str(phone), "first_name": str(first_name)}
    if name.get("last_name"):
        params["last_name"] = str(name["last_name"])
    return BotCall("sendContact", params)
