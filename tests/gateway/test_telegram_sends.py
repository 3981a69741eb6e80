"""Outbound BeaconMessages -> Bot API calls, one per send type."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from beacon.gateway.telegram.sends import MAX_TEXT, BotCall, UnsendableMessageError, build_calls
from beacon.messages import BeaconMessage, Location, Media, Reaction

CHAT = "987654321"


def _out(kind: str, user_id: str = CHAT, **fields: Any) -> BeaconMessage:
    return BeaconMessage(id="out-1", user_key=f"telegram:123:{user_id}", channel="telegram", account="123",
                         user_id=user_id, direction="outbound", kind=kind, **fields)


def test_text_becomes_send_message_replying_to_the_quoted_message() -> None:
    assert build_calls(_out("text", text="pong")) == [BotCall("sendMessage", {"chat_id": 987654321, "text": "pong"})]
    (call,) = build_calls(_out("text", text="pong", quoted_channel_message_id="42"))
    assert call.params["reply_parameters"] == {"message_id": 42, "allow_sending_without_reply": True}


def test_long_text_is_split_in_order_and_group_chat_ids_stay_negative() -> None:
    msg = _out("text", text="a" * MAX_TEXT + "b", user_id="-1001234", quoted_channel_message_id="3")
    calls = build_calls(msg)
    assert [c.params["text"] for c in calls] == ["a" * MAX_TEXT, "b"]
    assert calls[0].params["chat_id"] == -1001234 and "reply_parameters" not in calls[1].params


def test_whatsapp_shaped_buttons_and_lists_become_an_inline_keyboard() -> None:
    buttons = {"type": "button", "body": {"text": "Continue?"}, "action": {"buttons": [
        {"type": "reply", "reply": {"id": "yes", "title": "Yes"}},
        {"type": "reply", "reply": {"id": "no", "title": "No"}}]}}
    (call,) = build_calls(_out("interactive", payload=orjson.dumps(buttons).decode()))
    assert call.method == "sendMessage" and call.params["text"] == "Continue?"
    assert call.params["reply_markup"] == {"inline_keyboard": [[{"text": "Yes", "callback_data": "yes"}],
                                                               [{"text": "No", "callback_data": "no"}]]}
    menu = {"type": "list", "header": {"type": "text", "text": "Menu"}, "body": {"text": "Pick one"},
            "action": {"button": "Open", "sections": [{"title": "S", "rows": [{"id": "r1", "title": "One"}]}]}}
    (call,) = build_calls(_out("interactive", payload=orjson.dumps(menu).decode()))
    assert call.params["text"] == "Menu\n\nPick one"
    assert call.params["reply_markup"]["inline_keyboard"] == [[{"text": "One", "callback_data": "r1"}]]
    (call,) = build_calls(_out("text", text="Sure?", payload='{"buttons": [{"id": "ok", "title": "OK"}]}'))
    assert call.params["reply_markup"]["inline_keyboard"] == [[{"text": "OK", "callback_data": "ok"}]]


@pytest.mark.parametrize(("kind", "media", "meta", "method", "param"), [
    ("image", Media(id="F1", caption="cap"), {}, "sendPhoto", "photo"),
    ("document", Media(link="https://x/a.pdf", caption="cap"), {}, "sendDocument", "document"),
    ("video", Media(id="F3", caption="cap"), {}, "sendVideo", "video"),
    ("audio", Media(id="F4", caption="cap", mime_type="audio/mpeg"), {}, "sendAudio", "audio"),
    ("audio", Media(id="F5", caption="cap"), {"voice": "true"}, "sendVoice", "voice"),
    ("audio", Media(id="F6", caption="cap", mime_type="audio/ogg"), {}, "sendVoice", "voice"),
])
def test_media_sends(kind: str, media: Media, meta: dict[str, str], method: str, param: str) -> None:
    (call,) = build_calls(_out(kind, media=media, metadata=meta))
    assert call.method == method and call.params[param] == (media.id or media.link)
    assert call.params["caption"] == "cap" and call.params["chat_id"] == 987654321


def test_a_caption_too_long_for_telegram_follows_the_media_as_text() -> None:
    calls = build_calls(_out("image", media=Media(id="F", caption="c" * 1500)))
    assert [c.method for c in calls] == ["sendPhoto", "sendMessage"] and "caption" not in calls[0].params


def test_location_contacts_reaction_and_typing() -> None:
    (loc,) = build_calls(_out("location", location=Location(latitude=1.5, longitude=2.5)))
    assert loc == BotCall("sendLocation", {"chat_id": 987654321, "latitude": 1.5, "longitude": 2.5})
    payload = orjson.dumps([{"name": {"formatted_name": "Bob B", "first_name": "Bob", "last_name": "B"},
                             "phones": [{"phone": "+1555"}]}]).decode()
    (con,) = build_calls(_out("contacts", payload=payload))
    assert con.method == "sendContact" and con.params["phone_number"] == "+1555" and con.params["last_name"] == "B"
    (react,) = build_calls(_out("reaction", reaction=Reaction(emoji="👍", target_id="42")))
    assert react.params == {"chat_id": 987654321, "message_id": 42, "reaction": [{"type": "emoji", "emoji": "👍"}]}
    for kind in ("read_receipt", "typing"):
        assert build_calls(_out(kind, channel_message_id="42")) == [
            BotCall("sendChatAction", {"chat_id": 987654321, "action": "typing"})]


@pytest.mark.parametrize(("fields", "says"), [
    ({"kind": "text"}, "no text"),
    ({"kind": "image"}, "no media"),
    ({"kind": "template", "payload": "{}"}, "WhatsApp"),
    ({"kind": "interactive", "payload": '{"body": {"text": "x"}}'}, "no buttons"),
    ({"kind": "interactive", "payload": "not json"}, "not JSON"),
    ({"kind": "text", "text": "x", "payload": orjson.dumps({"buttons": [{"id": "i" * 65}]}).decode()}, "64 bytes"),
    ({"kind": "text", "text": "x", "quoted_channel_message_id": "wamid.X"}, "not a Telegram message_id"),
    ({"kind": "contacts", "payload": "[]"}, "no readable contact"),
])
def test_unsendable_messages_say_why(fields: dict[str, Any], says: str) -> None:
    kind = fields.pop("kind")
    with pytest.raises(UnsendableMessageError, match=says) as err:
        build_calls(_out(kind, **fields))
    assert "out-1" in str(err.value)
