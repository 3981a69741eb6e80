"""The Bot API's answers: success and error bodies, and parameter checks as Telegram makes them."""

from __future__ import annotations

from typing import Any

Json = dict[str, Any]

#: Send methods: (method, the parameter holding the content).
SEND_METHODS = {"sendMessage": "text", "sendPhoto": "photo", "sendDocument": "document", "sendVoice": "voice",
                "sendAudio": "audio", "sendVideo": "video", "sendSticker": "sticker", "sendLocation": "latitude",
                "sendContact": "phone_number"}
#: Methods naming a chat (faults aimed at a chat apply to them).
CHAT_METHODS = frozenset(SEND_METHODS) | {"sendChatAction", "setMessageReaction"}
CHAT_ACTIONS = frozenset({"typing", "upload_photo", "record_video", "upload_video", "record_voice", "upload_voice",
                          "upload_document", "choose_sticker", "find_location", "record_video_note",
                          "upload_video_note"})
EMPTY_CONTENT = {"text": "message text is empty", "photo": "there is no photo in the request",
                 "document": "there is no document in the request", "voice": "there is no voice in the request",
                 "audio": "there is no audio in the request", "video": "there is no video in the request",
                 "sticker": "there is no sticker in the request", "latitude": "latitude is empty",
                 "phone_number": "phone number is empty"}


class BadRequest(Exception):
    """A call Telegram refuses with 400 ``Bad Request: <description>``."""


def ok(result: Any) -> Json:
    return {"ok": True, "result": result}


def error(code: int, description: str, **parameters: Any) -> Json:
    body: Json = {"ok": False, "error_code": code, "description": description}
    if parameters:
        body["parameters"] = parameters
    return body


def chat_id_of(params: Json) -> int:
    """The ``chat_id`` parameter as the fake knows chats: an integer (``@username`` chats are not found)."""
    raw = params.get("chat_id")
    if raw is None or raw == "":
        raise BadRequest("chat_id is empty")
    try:
        return int(raw)
    except (TypeError, ValueError):
        raise BadRequest("chat not found") from None


def validate(method: str, params: Json) -> None:
    """Raise BadRequest the way the Bot API does for the common mistakes."""
    if method in CHAT_METHODS:
        chat_id_of(params)
    content = SEND_METHODS.get(method)
    if content is not None and params.get(content) in (None, ""):
        raise BadRequest(EMPTY_CONTENT[content])
    if method == "sendMessage" and len(str(params["text"])) > 4096:
        raise BadRequest("message is too long")
    if method == "sendLocation" and params.get("longitude") in (None, ""):
        raise BadRequest("longitude is empty")
    if method == "sendContact" and not params.get("first_name"):
        raise BadRequest("first name is empty")
    if len(str(params.get("caption") or "")) > 1024:
        raise BadRequest("message caption is too long")
    if method == "sendChatAction" and params.get("action") not in CHAT_ACTIONS:
        raise BadRequest("wrong parameter action in request")
    markup = params.get("reply_markup")
    if markup is not None:
        _validate_markup(markup)
    reply = params.get("reply_parameters")
    if reply is not None and (not isinstance(reply, dict) or not isinstance(reply.get("message_id"), int)):
        raise BadRequest("can't parse reply parameters JSON object")


def _validate_markup(markup: Any) -> None:
    rows = markup.get("inline_keyboard") if isinstance(markup, dict) else None
    if not isinstance(rows, list) or not all(isinstance(r, list) for r in rows):
        raise BadRequest("can't parse inline keyboard button: InlineKeyboardMarkup must be an Array of "
                         "Array of InlineKeyboardButton")
    for row in rows:
        for button in row:
            if not isinstance(button, dict) or not button.get("text"):
                raise BadRequest("can't parse inline keyboard button: Text buttons are unallowed in the inline "
                                 "keyboard")
            data = button.get("callback_data")
            if data is not None and not 1 <= len(str(data).encode()) <= 64:
                raise BadRequest("BUTTON_DATA_INVALID")
