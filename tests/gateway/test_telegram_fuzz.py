"""Property test of the Update parser (hypothesis): documented Update shapes with any field missing,
mistyped or arbitrary never crash it; it raises only MalformedUpdateError, and every message it
keeps belongs to a Telegram conversation of the bot."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from beacon.gateway.telegram.parse import MalformedUpdateError, parse_update

json_scalars = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | st.text(
    max_size=30)
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
    st.text(max_size=10), inner, max_size=4), max_leaves=20)

MESSAGE: dict[str, Any] = {
    "message_id": 5, "date": 1735689600, "from": {"id": 9, "is_bot": False, "first_name": "A"},
    "chat": {"id": 9, "type": "private"}, "text": "hi", "caption": "c",
    "photo": [{"file_id": "p", "file_unique_id": "u", "width": 1, "height": 1}],
    "document": {"file_id": "d", "file_unique_id": "u"}, "voice": {"file_id": "v", "file_unique_id": "u"},
    "location": {"latitude": 1.0, "longitude": 2.0}, "venue": {"location": {"latitude": 1, "longitude": 2}},
    "contact": {"phone_number": "1", "first_name": "B"}, "sticker": {"file_id": "s", "emoji": "x"},
    "reply_to_message": {"message_id": 4}, "edit_date": 1735689700,
    "reply_markup": {"inline_keyboard": [[{"text": "t", "callback_data": "d"}]]},
}
UPDATE_KINDS = ("message", "edited_message", "callback_query", "channel_post", "poll")


@st.composite
def updates(draw: st.DrawFn) -> Any:
    """A documented Update with some fields (at any depth) removed or replaced by arbitrary JSON."""
    kind = draw(st.sampled_from(UPDATE_KINDS))
    fields = draw(st.sets(st.sampled_from(sorted(MESSAGE)), max_size=6))
    message = {k: v for k, v in MESSAGE.items() if k in fields or k in {"message_id", "chat"}}
    for key in draw(st.sets(st.sampled_from(sorted(message)), max_size=3)):
        message[key] = draw(json_values)
    body: Any = {"message": message}
    if kind == "callback_query":
        body = {"callback_query": {"id": draw(json_values | st.just("q")), "from": draw(json_values |
                st.just(MESSAGE["from"])), "message": message, "data": draw(json_values)}}
    elif kind != "message":
        body = {kind: message}
    body["update_id"] = draw(st.integers(-(2**40), 2**40) | json_values)
    return draw(st.just(body) | json_values)


@hsettings(max_examples=150, deadline=None)
@given(updates())
def test_the_parser_never_crashes_on_update_shaped_json(update: Any) -> None:
    try:
        body = orjson.dumps(update, option=orjson.OPT_NON_STR_KEYS)
    except (orjson.JSONEncodeError, TypeError):
        return  # integers beyond 64 bits: not JSON Telegram could send (orjson refuses them)
    try:
        parsed = parse_update(body, "123")
    except MalformedUpdateError:
        return
    for msg in parsed.messages:
        assert msg.user_key == f"telegram:123:{msg.user_id}" and msg.direction == "inbound" and msg.id
    assert all(d.reason and len(d.reason) <= 200 for d in parsed.dropped)
