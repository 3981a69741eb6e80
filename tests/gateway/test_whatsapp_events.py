"""Events are not questions: edits, deletions, number changes and call-permission replies parse into the
event kinds (the pipeline records them and never answers them), and an interactive Meta sent without
its body but with an error is ``unsupported`` carrying that error."""

from __future__ import annotations

from typing import Any

from beacon.fakes.whatsapp import payloads as p
from beacon.gateway.whatsapp.parse import parse_webhook
from beacon.messages import EVENT_KINDS, BeaconMessage

USER = "447700900123"


def _parse(payload: dict[str, Any]) -> BeaconMessage:
    (msg,) = parse_webhook(p.encode(payload))
    return msg


def test_an_edit_names_the_message_edited_and_carries_its_new_text() -> None:
    msg = _parse(p.event_webhook("edit", USER, original="wamid.ORIGINAL", text="see you at 6, not 5"))
    assert msg.kind == "edit" and msg.kind in EVENT_KINDS and msg.raw_type == "edit"
    assert msg.quoted_channel_message_id == "wamid.ORIGINAL" and msg.text == "see you at 6, not 5"
    assert msg.interactive_reply is None and msg.metadata["edited_type"] == "text"


def test_an_edited_caption_keeps_the_media_and_the_new_caption_as_text() -> None:
    edited = {"type": "image", "image": {"id": "987", "mime_type": "image/jpeg", "caption": "the red one"}}
    msg = _parse(p.envelope([p.value(contacts=[p.contact(USER)], messages=[p.message(
        USER, "edit", {"original_message_id": "wamid.PHOTO", "message": edited})])]))
    assert msg.kind == "edit" and msg.text == "the red one"
    assert msg.media is not None and msg.media.id == "987" and msg.quoted_channel_message_id == "wamid.PHOTO"


def test_a_revoke_is_a_deletion_of_the_message_it_names() -> None:
    msg = _parse(p.event_webhook("revoke", USER, original="wamid.GONE"))
    assert msg.kind == "delete" and msg.quoted_channel_message_id == "wamid.GONE" and msg.text is None


def test_an_unsupported_revoke_or_edit_is_still_an_event_and_keeps_its_error() -> None:
    for inner, kind in (("revoke", "delete"), ("edit", "edit")):
        m = p.message(USER, "unsupported", {"type": inner})
        m["errors"] = p.UNSUPPORTED_MESSAGE_ERRORS
        msg = _parse(p.envelope([p.value(contacts=[p.contact(USER)], messages=[m])]))
        assert msg.kind == kind and msg.raw_type == f"unsupported:{inner}"
        assert msg.error is not None and msg.error.code == 131051


def test_a_number_change_keys_on_the_old_number_and_records_the_new_one() -> None:
    msg = _parse(p.event_webhook("user_changed_number", USER, new_wa_id="12195555358"))
    assert msg.kind == "user_changed" and msg.user_id == USER and msg.user_key.endswith(f":{USER}")
    assert msg.metadata["new_user_id"] == "12195555358"
    assert msg.metadata["system_type"] == "user_changed_number" and "changed from" in (msg.text or "")


def test_a_call_permission_reply_is_recorded_with_its_response_not_as_a_button() -> None:
    msg = _parse(p.event_webhook("call_permission_reply", USER, response="reject"))
    assert msg.kind == "call_permission" and msg.interactive_reply is None
    assert msg.metadata["response"] == "reject" and '"response_source":"user_action"' in (msg.payload or "")


def test_an_interactive_without_its_body_is_unsupported_with_the_error_meta_sent() -> None:
    msg = _parse(p.event_webhook("interactive_error", USER))
    assert msg.kind == "unsupported" and msg.raw_type == "interactive" and msg.interactive_reply is None
    assert msg.error is not None and msg.error.code == 131000 and msg.error.title == "Something went wrong"


def test_button_and_list_replies_are_still_interactive() -> None:
    msg = _parse(p.envelope([p.value(contacts=[p.contact(USER)],
                                     messages=[p.message(USER, "interactive", p.EXAMPLE_BODIES["interactive"])])]))
    assert msg.kind == "interactive" and msg.interactive_reply is not None and msg.interactive_reply.id == "yes-1"
