"""Bot API Updates -> BeaconMessages, from the documented Update shapes."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from beacon.gateway.telegram.parse import MalformedUpdateError, ParsedUpdate, parse_update

BOT = "123456"
CHAT = 987654321
USER = {"id": CHAT, "is_bot": False, "first_name": "Ada", "last_name": "Lovelace", "username": "ada",
        "language_code": "en"}
PRIVATE = {"id": CHAT, "first_name": "Ada", "username": "ada", "type": "private"}


def _message(**content: Any) -> dict[str, Any]:
    return {"message_id": 42, "from": USER, "chat": PRIVATE, "date": 1735689600, **content}


def _parse(update: dict[str, Any]) -> ParsedUpdate:
    return parse_update(orjson.dumps(update), BOT)


def test_text_message_becomes_an_inbound_text_keyed_by_bot_and_chat() -> None:
    parsed = _parse({"update_id": 10, "message": _message(text="/ping")})
    assert parsed.update_id == 10 and parsed.dropped == [] and parsed.callback_query_id is None
    (msg,) = parsed.messages
    assert msg.kind == "text" and msg.text == "/ping" and msg.direction == "inbound"
    assert msg.user_key == f"telegram:{BOT}:{CHAT}" and msg.account == BOT and msg.user_id == str(CHAT)
    assert msg.channel == "telegram" and msg.channel_message_id == "42" and msg.profile_name == "Ada Lovelace"
    assert msg.channel_timestamp is not None and msg.channel_timestamp.timestamp() == 1735689600
    assert msg.metadata["telegram.chat_type"] == "private" and "telegram.edited" not in msg.metadata


def test_a_redelivered_update_yields_the_same_id_and_other_chats_other_ids() -> None:
    first = _parse({"update_id": 10, "message": _message(text="hi")}).messages[0]
    again = _parse({"update_id": 10, "message": _message(text="hi")}).messages[0]
    other_chat = _parse({"update_id": 11, "message": _message(text="hi", chat={**PRIVATE, "id": 5})}).messages[0]
    assert first.id == again.id and first.id != other_chat.id


def test_reply_to_message_is_the_quoted_id() -> None:
    (msg,) = _parse({"update_id": 1, "message": _message(text="yes", reply_to_message=_message(text="q?")
                                                         | {"message_id": 7})}).messages
    assert msg.quoted_channel_message_id == "7"


def test_photo_keeps_the_largest_size_and_the_caption() -> None:
    photo = [{"file_id": "small", "file_unique_id": "s", "width": 90, "height": 60, "file_size": 1000},
             {"file_id": "large", "file_unique_id": "l", "width": 1280, "height": 853, "file_size": 90000},
             {"file_id": "mid", "file_unique_id": "m", "width": 320, "height": 213, "file_size": 9000}]
    (msg,) = _parse({"update_id": 2, "message": _message(photo=photo, caption="look",
                                                         media_group_id="13")}).messages
    assert msg.kind == "image" and msg.media is not None
    assert msg.media.id == "large" and msg.media.caption == "look"
    assert msg.metadata["telegram.media_group_id"] == "13"


@pytest.mark.parametrize(("field", "obj", "kind", "flag"), [
    ("document", {"file_id": "D", "file_unique_id": "d", "file_name": "a.pdf", "mime_type": "application/pdf"},
     "document", None),
    ("voice", {"file_id": "V", "file_unique_id": "v", "duration": 3, "mime_type": "audio/ogg"}, "audio", "voice"),
    ("audio", {"file_id": "A", "file_unique_id": "a", "duration": 200, "mime_type": "audio/mpeg"}, "audio", None),
    ("video", {"file_id": "W", "file_unique_id": "w", "width": 1, "height": 1, "duration": 5}, "video", None),
    ("video_note", {"file_id": "N", "file_unique_id": "n", "length": 240, "duration": 5}, "video", "video_note"),
])
def test_media_messages(field: str, obj: dict[str, Any], kind: str, flag: str | None) -> None:
    (msg,) = _parse({"update_id": 3, "message": _message(**{field: obj}, caption="c")}).messages
    assert msg.kind == kind and msg.media is not None and msg.media.id == obj["file_id"]
    assert msg.media.caption == "c" and msg.media.mime_type == obj.get("mime_type")
    assert msg.media.filename == obj.get("file_name")
    if flag:
        assert msg.metadata[flag] == "true"


def test_animation_is_a_video_not_its_document_twin() -> None:
    anim = {"file_id": "G", "file_unique_id": "g", "width": 1, "height": 1, "duration": 1, "mime_type": "video/mp4"}
    (msg,) = _parse({"update_id": 4, "message": _message(animation=anim, document=anim)}).messages
    assert msg.kind == "video" and msg.metadata["animated"] == "true"


def test_sticker_location_venue_contact() -> None:
    sticker = {"file_id": "S", "file_unique_id": "s", "type": "regular", "width": 512, "height": 512,
               "is_animated": False, "is_video": False, "emoji": "👍"}
    (st,) = _parse({"update_id": 5, "message": _message(sticker=sticker)}).messages
    assert st.kind == "sticker" and st.media is not None and st.media.id == "S" and st.text == "👍"
    (loc,) = _parse({"update_id": 6, "message": _message(location={"latitude": 51.5, "longitude": -0.12})}).messages
    assert loc.kind == "location" and loc.location is not None and loc.location.longitude == -0.12
    venue = {"location": {"latitude": 1.0, "longitude": 2.0}, "title": "Cafe", "address": "1 Road"}
    (ven,) = _parse({"update_id": 7, "message": _message(venue=venue, location=venue["location"])}).messages
    assert ven.location is not None and ven.location.name == "Cafe" and ven.location.address == "1 Road"
    contact = {"phone_number": "+447700900123", "first_name": "Bob", "last_name": "B", "user_id": 555}
    (con,) = _parse({"update_id": 8, "message": _message(contact=contact)}).messages
    assert con.kind == "contacts" and con.payload is not None
    (entry,) = orjson.loads(con.payload)
    assert entry["name"]["formatted_name"] == "Bob B" and entry["phones"] == [{"phone": "+447700900123"}]
    assert entry["telegram_user_id"] == 555


def test_edited_message_is_marked_and_gets_its_own_id_per_update() -> None:
    original = _parse({"update_id": 20, "message": _message(text="helo")}).messages[0]
    edit = {"update_id": 21, "edited_message": _message(text="hello", edit_date=1735689700)}
    (first,) = _parse(edit).messages
    (second,) = _parse({**edit, "update_id": 22}).messages
    assert first.metadata["telegram.edited"] == "true" and first.kind == "text" and first.text == "hello"
    assert first.channel_message_id == original.channel_message_id == "42"
    assert len({original.id, first.id, second.id}) == 3 and first.id == _parse(edit).messages[0].id
    assert first.channel_timestamp is not None and first.channel_timestamp.timestamp() == 1735689700


def test_callback_query_is_an_interactive_reply_with_the_button_title() -> None:
    markup = {"inline_keyboard": [[{"text": "Yes please", "callback_data": "yes"}],
                                  [{"text": "No", "callback_data": "no"}]]}
    bot_message = {"message_id": 77, "from": {"id": 123456, "is_bot": True, "first_name": "Beacon"},
                   "chat": PRIVATE, "date": 1735689600, "text": "Continue?", "reply_markup": markup}
    update = {"update_id": 30, "callback_query": {"id": "4382bfdwdsb323b2d9", "from": USER, "message": bot_message,
                                                  "chat_instance": "-1", "data": "yes"}}
    parsed = _parse(update)
    assert parsed.callback_query_id == "4382bfdwdsb323b2d9"
    (msg,) = parsed.messages
    assert msg.kind == "interactive" and msg.interactive_reply is not None
    assert msg.interactive_reply.id == "yes" and msg.interactive_reply.title == "Yes please"
    assert msg.quoted_channel_message_id == "77" and msg.user_key == f"telegram:{BOT}:{CHAT}"
    assert msg.id == _parse(update).messages[0].id


def test_callback_query_without_message_uses_the_user_chat_and_game_is_unsupported() -> None:
    update = {"update_id": 31, "callback_query": {"id": "q2", "from": USER, "inline_message_id": "im",
                                                  "chat_instance": "-1", "data": "x"}}
    (msg,) = _parse(update).messages
    assert msg.user_id == str(CHAT) and msg.interactive_reply is not None and msg.interactive_reply.title is None
    game = {"update_id": 32, "callback_query": {"id": "q3", "from": USER, "chat_instance": "-1",
                                                "game_short_name": "g"}}
    parsed = _parse(game)
    assert parsed.callback_query_id == "q3" and parsed.messages[0].kind == "unsupported"
    assert parsed.messages[0].raw_type == "callback_game"


def test_unknown_content_is_unsupported_with_its_raw_type() -> None:
    dice = _parse({"update_id": 40, "message": _message(dice={"emoji": "🎲", "value": 4})}).messages[0]
    assert dice.kind == "unsupported" and dice.raw_type == "dice" and orjson.loads(dice.payload or "")["value"] == 4
    novel = _parse({"update_id": 41, "message": _message(hologram={"x": 1})}).messages[0]
    assert novel.kind == "unsupported" and novel.raw_type == "hologram"


def test_other_update_types_and_service_messages_are_dropped_with_a_reason() -> None:
    parsed = _parse({"update_id": 50, "channel_post": _message(text="news")})
    assert parsed.messages == [] and parsed.dropped[0].what == "channel_post"
    assert "not handled" in parsed.dropped[0].reason and parsed.dropped[0].update_id == 50
    joined = _parse({"update_id": 51, "message": _message(new_chat_members=[USER])})
    assert joined.messages == [] and "service message" in joined.dropped[0].reason
    no_chat = _parse({"update_id": 52, "message": {"message_id": 1, "date": 1, "text": "x"}})
    assert no_chat.messages == [] and "chat" in no_chat.dropped[0].reason


@pytest.mark.parametrize("body", [b"not json", b"[1]", b'{"message": {}}', b'{"update_id": "1"}'])
def test_malformed_bodies_are_refused(body: bytes) -> None:
    with pytest.raises(MalformedUpdateError) as err:
        parse_update(body, BOT)
    assert err.value.status == 400
