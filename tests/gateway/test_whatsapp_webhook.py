"""The webhook parser: every type in the reference, batches, statuses, ids and malformed shapes."""

from __future__ import annotations

from typing import Any

import pytest

from beacon.fakes.whatsapp import payloads as p
from beacon.gateway.whatsapp.parse import (
    MalformedWebhookError,
    message_id,
    parse_notification,
    parse_webhook,
    status_id,
)
from beacon.gateway.whatsapp.signature import SignatureError, check_signature, sign
from beacon.messages import BeaconMessage

PNID = p.DEFAULT_PHONE_NUMBER_ID
USER = "447700900123"


def _one(mtype: str, body: Any, **kw: Any) -> BeaconMessage:
    payload = p.envelope([p.value(contacts=[p.contact(USER, "Ann")], messages=[p.message(USER, mtype, body, **kw)])])
    (msg,) = parse_webhook(p.encode(payload))
    return msg


def test_text_message_has_user_key_name_timestamp_and_wamid_derived_id() -> None:
    wamid = p.new_wamid()
    msg = _one("text", {"body": "Hello, café ☕"}, wamid=wamid, timestamp=1_700_000_000)
    assert msg.kind == "text" and msg.direction == "inbound" and msg.text == "Hello, café ☕"
    assert msg.user_key == f"whatsapp:{PNID}:{USER}" and msg.account == PNID and msg.user_id == USER
    assert msg.profile_name == "Ann" and msg.channel_message_id == wamid
    assert msg.id == message_id(PNID, wamid)
    assert msg.channel_timestamp is not None and msg.channel_timestamp.timestamp() == 1_700_000_000


@pytest.mark.parametrize("mtype", ["image", "video", "audio", "document", "sticker"])
def test_media_messages_keep_id_mime_caption_filename(mtype: str) -> None:
    body = p.EXAMPLE_BODIES[mtype]
    msg = _one(mtype, body)
    assert msg.kind == mtype and msg.media is not None
    assert msg.media.id == body["id"] and msg.media.mime_type == body["mime_type"]
    assert msg.media.caption == body.get("caption") and msg.media.filename == body.get("filename")
    if mtype == "audio":
        assert msg.metadata["voice"] == "true"


def test_location_contacts_reaction_button_and_interactive_replies() -> None:
    loc = _one("location", p.EXAMPLE_BODIES["location"]).location
    assert loc is not None and loc.latitude == 51.5072 and loc.name == "London"
    contacts = _one("contacts", p.EXAMPLE_BODIES["contacts"])
    assert contacts.kind == "contacts" and "Ada Lovelace" in (contacts.payload or "")
    reaction = _one("reaction", p.EXAMPLE_BODIES["reaction"]).reaction
    assert reaction is not None and reaction.emoji == "👍" and reaction.target_id.startswith("wamid.")
    removed = _one("reaction", {"message_id": "wamid.X"}).reaction
    assert removed is not None and removed.emoji == ""
    button = _one("button", p.EXAMPLE_BODIES["button"]).interactive_reply
    assert button is not None and button.type == "button" and button.id == "STOP_PROMOS"
    br = _one("interactive", p.EXAMPLE_BODIES["interactive"], context={"from": "15550783881", "id": "wamid.Q"})
    assert br.interactive_reply is not None and br.interactive_reply.type == "button_reply"
    assert br.interactive_reply.title == "Yes"
    assert br.quoted_channel_message_id == "wamid.Q" and br.metadata["context_from"] == "15550783881"
    lr = _one("interactive", p.LIST_REPLY).interactive_reply
    assert lr is not None and lr.type == "list_reply" and lr.description == "Second"


@pytest.mark.parametrize("mtype", ["order", "system", "brand_new_type"])
def test_unknown_types_are_unsupported_with_raw_type_and_body_kept(mtype: str) -> None:
    # a system message of a type Beacon does not know (a number change is an event: test_whatsapp_events)
    body = {"body": "?", "type": "brand_new_system_type"} if mtype == "system" else p.EXAMPLE_BODIES.get(mtype)
    msg = _one(mtype, body or {"x": 1})
    assert msg.kind == "unsupported" and msg.raw_type == mtype and msg.payload


def test_unsupported_message_keeps_its_error() -> None:
    m = p.message(USER, "unsupported", None)
    m["errors"] = p.UNSUPPORTED_MESSAGE_ERRORS
    (msg,) = parse_webhook(p.encode(p.envelope([p.value(messages=[m])])))
    assert msg.kind == "unsupported" and msg.raw_type == "unsupported"
    assert msg.error is not None and msg.error.code == 131051


def test_statuses_with_errors_and_ids_from_wamid_and_status() -> None:
    wamid = p.new_wamid()
    errors = [{"code": 131047, "title": "Re-engagement message", "message": "Re-engagement message",
               "error_data": {"details": "More than 24 hours have passed"}}]
    payload = p.envelope([p.value(statuses=[
        p.status(wamid, "read", USER, opaque="beacon-id-1"),
        p.status(wamid, "delivered", USER),
        p.status(wamid, "failed", USER, errors=errors),
    ])])
    read, delivered, failed = parse_webhook(p.encode(payload))
    assert read.direction == "status" and read.status == "read" and read.reply_to_id == "beacon-id-1"
    assert read.id == status_id(PNID, wamid, "read") != delivered.id
    assert failed.error is not None and failed.error.code == 131047
    assert (failed.error.details or "").startswith("More than 24")
    assert read.user_key == f"whatsapp:{PNID}:{USER}"


def test_a_batch_of_many_entries_changes_and_numbers_is_parsed_entirely() -> None:
    values = [p.value(phone_number_id=f"pn{i}", messages=[p.text_message(f"u{j}", f"m{i}-{j}") for j in range(50)])
              for i in range(4)]
    payload = p.envelope(values[:2])
    payload["entry"].append(p.envelope(values[2:])["entry"][0])
    msgs = parse_webhook(p.encode(payload))
    assert len(msgs) == 200 and len({m.id for m in msgs}) == 200
    assert {m.account for m in msgs} == {"pn0", "pn1", "pn2", "pn3"}


def test_redelivered_webhook_yields_the_same_ids() -> None:
    body = p.encode(p.text_webhook(USER, "hi"))
    assert [m.id for m in parse_webhook(body)] == [m.id for m in parse_webhook(body)]


def test_other_fields_and_empty_values_are_ignored() -> None:
    payload = {"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [
        {"field": "account_update", "value": {"event": "VERIFIED_ACCOUNT"}},
        {"field": "messages", "value": {"messaging_product": "whatsapp", "errors": [{"code": 131000}]}},
    ]}]}
    assert parse_webhook(p.encode(payload)) == []


def test_missing_from_falls_back_to_the_contact() -> None:
    m = p.text_message(USER, "hi")
    del m["from"]
    (msg,) = parse_webhook(p.encode(p.envelope([p.value(contacts=[{"user_id": "US.123"}], messages=[m])])))
    assert msg.user_id == "US.123"


@pytest.mark.parametrize("body", [b"not json", b"[1]", b'{"entry": 3}', b'{"entry": [{"changes": [{"field":'
                                  b' "messages", "value": {"messages": [{"id": "w"}]}}]}]}'])
def test_malformed_bodies_are_rejected(body: bytes) -> None:
    with pytest.raises(MalformedWebhookError):
        parse_webhook(body)


def _batch(*bad: Any, contacts: list[Any] | None = None, statuses: list[Any] | None = None) -> tuple[bytes, list[str]]:
    """A notification with a good text before and after each ``bad`` message; the good texts."""
    msgs: list[Any] = []
    good: list[str] = []
    for i, b in enumerate(bad):
        msgs += [p.text_message(USER, f"good {i}"), b]
        good.append(f"good {i}")
    msgs.append(p.text_message(USER, "last"))
    good.append("last")
    return p.encode(p.envelope([p.value(contacts=contacts, messages=msgs, statuses=statuses)])), good


def _no(field: str, **changes: Any) -> dict[str, Any]:
    m = p.text_message(USER, f"bad: {field}")
    m.pop(field, None)
    m.update(changes)
    return m


def test_messages_without_id_or_a_usable_sender_are_dropped_and_the_rest_kept() -> None:
    bad = [_no("id"), _no("from"), _no("x", **{"from": {"a": 1}}), _no("x", **{"from": "4477\x00009"}),
           _no("x", **{"from": "whatsapp:1:2"}), _no("x", **{"from": "9" * 300}), "not an object"]
    body, good = _batch(*bad)
    n = parse_notification(body)
    assert [m.text for m in n.messages] == good
    assert all(m.user_id == USER for m in n.messages)
    assert len(n.dropped) == len(bad) and {d.what for d in n.dropped} == {"message"}
    assert "no id" in n.dropped[0].reason and "sender" in n.dropped[1].reason


def test_a_message_from_nobody_is_never_keyed_to_a_shared_unknown_user() -> None:
    body, _good = _batch(_no("from"), _no("from"))
    assert {m.user_key for m in parse_webhook(body)} == {f"whatsapp:{PNID}:{USER}"}


def test_a_contact_whose_profile_is_a_string_does_not_sink_the_batch() -> None:
    body, good = _batch(contacts=[{"profile": "Ann", "wa_id": USER}, {"profile": None, "wa_id": {"x": 1}}])
    msgs = parse_webhook(body)
    assert [m.text for m in msgs] == good and msgs[0].profile_name is None


def test_a_status_error_code_beyond_32_bits_is_kept_in_the_text() -> None:
    huge = 2**31 + 5
    st = p.status(p.new_wamid(), "failed", USER, errors=[{"code": huge, "title": "Odd"}])
    body, good = _batch(statuses=[st, "not an object", {"id": "w"}])
    n = parse_notification(body)
    assert [m.text for m in n.messages if m.kind == "text"] == good
    (status,) = [m for m in n.messages if m.kind == "status"]
    assert status.error is not None and status.error.code is None and str(huge) in (status.error.message or "")
    assert [d.what for d in n.dropped] == ["status", "status"]


def test_an_unknown_type_nested_300_levels_deep_is_kept_as_unsupported() -> None:
    deep: Any = "bottom"
    for _ in range(300):
        deep = {"d": deep}
    body, good = _batch(p.message(USER, "hologram", deep), p.message(USER, "location", deep))
    msgs = parse_webhook(body)
    assert [m.text for m in msgs if m.kind == "text"] == good
    odd = [m for m in msgs if m.kind != "text"]
    assert [m.raw_type for m in odd] == ["hologram", "location"] and all(m.kind == "unsupported" for m in odd)
    assert all("content not kept" in (m.payload or "") for m in odd)


def test_signature_over_raw_bytes_with_escaped_non_ascii() -> None:
    body = p.encode(p.text_webhook(USER, "café 👍"))
    assert b"\\u00e9" in body
    check_signature(body, sign(body, "s3cret"), "s3cret")
    with pytest.raises(SignatureError) as missing:
        check_signature(body, None, "s3cret")
    assert missing.value.status == 401
    with pytest.raises(SignatureError) as wrong:
        check_signature(body, sign(body, "other"), "s3cret")
    assert wrong.value.status == 403
    import json

    reserialised = json.dumps(json.loads(body), ensure_ascii=False, separators=(",", ":")).encode()
    with pytest.raises(SignatureError):
        check_signature(reserialised, sign(body, "s3cret"), "s3cret")
