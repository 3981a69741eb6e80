"""Updates as Telegram sends them to a webhook: what a user does, in the documented shapes."""

from __future__ import annotations

import time
from typing import Any

Json = dict[str, Any]


def user(chat_id: int, name: str | None = None) -> Json:
    """The ``from`` of a private chat's user (in a private chat the chat id is the user's id)."""
    first, _, last = (name or "Test User").partition(" ")
    obj: Json = {"id": chat_id, "is_bot": False, "first_name": first, "language_code": "en"}
    if last:
        obj["last_name"] = last
    return obj


def chat(chat_id: int, name: str | None = None) -> Json:
    if chat_id < 0:
        return {"id": chat_id, "title": name or "Test Group", "type": "supergroup" if chat_id < -10**12 else "group"}
    first = (name or "Test User").partition(" ")[0]
    return {"id": chat_id, "first_name": first, "type": "private"}


def message(chat_id: int, message_id: int, *, name: str | None = None, sender_id: int | None = None,
            **content: Any) -> Json:
    """A Message a user sent: ``content`` is ``text=...``, ``photo=[...]``, ``location={...}``..."""
    return {"message_id": message_id, "from": user(sender_id or chat_id, name), "chat": chat(chat_id, name),
            "date": int(time.time()), **content}


def text_update(update_id: int, chat_id: int, message_id: int, text: str, name: str | None = None) -> Json:
    return {"update_id": update_id, "message": message(chat_id, message_id, name=name, text=text)}


def callback_update(update_id: int, query_id: str, chat_id: int, bot_message: Json, data: str,
                    name: str | None = None) -> Json:
    """The user tapped the inline button with ``callback_data`` ``data`` under ``bot_message``."""
    return {"update_id": update_id, "callback_query": {"id": query_id, "from": user(chat_id, name),
                                                       "message": bot_message, "chat_instance": str(chat_id),
                                                       "data": data}}
