"""Cloud API webhook notifications -> BeaconMessages.

A POST may batch many entries, changes, messages and statuses: every one is parsed. Fields that
may be missing are optional; unknown message types become ``unsupported`` with the raw type and
the raw object kept. Ids are derived from the wamid (messages) and from (wamid, status)
(statuses), so a redelivered webhook yields the same ids.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import orjson

from beacon.errors import BeaconError
from beacon.gateway.whatsapp import CHANNEL
from beacon.messages import (
    INBOUND,
    BeaconMessage,
    InteractiveReply,
    Location,
    Media,
    Reaction,
    StatusError,
    make_user_key,
    stable_id,
)

log = logging.getLogger("beacon.gateway.whatsapp.webhook")

MEDIA_TYPES = frozenset({"image", "video", "audio", "document", "sticker"})
#: Types with a typed BeaconMessage form; everything else is ``unsupported`` with ``raw_type``.
KNOWN_TYPES = MEDIA_TYPES | {"text", "location", "contacts", "interactive", "button", "reaction"}
UNKNOWN_USER = "unknown"

Json = dict[str, Any]


class MalformedWebhookError(BeaconError):
    """The body is not JSON or not shaped like a Cloud API notification (answer 400)."""


def message_id(account: str, wamid: str) -> str:
    """BeaconMessage id of an inbound message."""
    return stable_id(CHANNEL, account, wamid)


def status_id(account: str, wamid: str, status: str) -> str:
    """BeaconMessage id of a delivery status; statuses dedupe on (wamid, status)."""
    return stable_id(CHANNEL, account, wamid, status)


def parse_timestamp(value: Any) -> datetime | None:
    """Unix seconds as a string (or number) -> aware datetime; None when absent or unparseable."""
    if value is None:
        return None
    try:
        return datetime.fromtimestamp(int(str(value)), UTC)
    except (ValueError, OverflowError, OSError):
        return None


def parse_webhook(body: bytes) -> list[BeaconMessage]:
    """Every message and status of a notification, in the order they appear."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise MalformedWebhookError(f"body is not JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise MalformedWebhookError("body is not a JSON object")
    entries = doc.get("entry")
    if not isinstance(entries, list):
        raise MalformedWebhookError("no entry list")
    out: list[BeaconMessage] = []
    for entry in entries:
        if not isinstance(entry, dict):
            raise MalformedWebhookError("an entry is not an object")
        changes = entry.get("changes", [])
        if not isinstance(changes, list):
            raise MalformedWebhookError("entry.changes is not a list")
        for change in changes:
            if not isinstance(change, dict):
                raise MalformedWebhookError("a change is not an object")
            if change.get("field") != "messages":
                continue  # other subscriptions (account updates, templates...) are accepted and ignored
            value = change.get("value")
            if not isinstance(value, dict):
                raise MalformedWebhookError("change.value is not an object")
            out.extend(_parse_value(value))
    return out


def _parse_value(value: Json) -> list[BeaconMessage]:
    messages = _list(value, "messages")
    statuses = _list(value, "statuses")
    for err in _list(value, "errors"):
        log.warning("WhatsApp reported an error in a webhook (not tied to a message): %s", err)
    if not messages and not statuses:
        return []
    metadata = value.get("metadata")
    account = metadata.get("phone_number_id") if isinstance(metadata, dict) else None
    if not isinstance(account, str) or not account:
        raise MalformedWebhookError("value.metadata.phone_number_id is missing")
    names: dict[str, str] = {}
    contacts = _list(value, "contacts")
    for contact in contacts:
        if isinstance(contact, dict):
            who = contact.get("wa_id") or contact.get("user_id")
            name = (contact.get("profile") or {}).get("name")
            if who and name:
                names[str(who)] = str(name)
    only_contact = None
    if len(contacts) == 1 and isinstance(contacts[0], dict):
        only_contact = contacts[0].get("wa_id") or contacts[0].get("user_id")
    out = [_parse_message(m, account, names, only_contact) for m in messages]
    out.extend(_parse_status(s, account) for s in statuses)
    return out


def _list(obj: Json, key: str) -> list[Any]:
    value = obj.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise MalformedWebhookError(f"value.{key} is not a list")
    return value


def _str(value: Any) -> str | None:
    return None if value is None else str(value)


def _error(errors: Any) -> StatusError | None:
    if not isinstance(errors, list) or not errors or not isinstance(errors[0], dict):
        return None
    first = errors[0]
    code = first.get("code")
    details = (first.get("error_data") or {}).get("details") if isinstance(first.get("error_data"), dict) else None
    return StatusError(
        code=int(code) if isinstance(code, int | str) and str(code).lstrip("-").isdigit() else None,
        title=_str(first.get("title")),
        message=_str(first.get("message")),
        details=_str(details),
    )


def _parse_message(m: Any, account: str, names: dict[str, str], only_contact: Any) -> BeaconMessage:
    if not isinstance(m, dict):
        raise MalformedWebhookError("a message is not an object")
    wamid = m.get("id")
    if not isinstance(wamid, str) or not wamid:
        raise MalformedWebhookError("a message has no id")
    user = m.get("from") or m.get("from_user_id") or m.get("user_id") or only_contact or UNKNOWN_USER
    user = str(user)
    mtype = str(m.get("type") or "unknown")
    body = m.get(mtype) if isinstance(m.get(mtype), dict | list) else None
    fields: dict[str, Any] = {}
    meta: dict[str, str] = {}
    kind = mtype if mtype in KNOWN_TYPES else "unsupported"
    obj: Json = body if isinstance(body, dict) else {}
    if mtype == "text":
        fields["text"] = _str(obj.get("body")) or ""
    elif mtype in MEDIA_TYPES:
        fields["media"] = Media(
            id=_str(obj.get("id")),
            link=_str(obj.get("url")),
            mime_type=_str(obj.get("mime_type")),
            caption=_str(obj.get("caption")),
            filename=_str(obj.get("filename")),
            sha256=_str(obj.get("sha256")),
        )
        for flag in ("voice", "animated"):
            if flag in obj:
                meta[flag] = "true" if obj[flag] else "false"
    elif mtype == "location":
        try:
            fields["location"] = Location(
                latitude=float(obj["latitude"]),
                longitude=float(obj["longitude"]),
                name=_str(obj.get("name")),
                address=_str(obj.get("address")),
            )
        except (KeyError, TypeError, ValueError):
            kind = "unsupported"
            fields["payload"] = orjson.dumps(obj).decode()
    elif mtype == "contacts":
        fields["payload"] = orjson.dumps(body if body is not None else []).decode()
    elif mtype == "interactive":
        itype = str(obj.get("type") or "unknown")
        raw_reply = obj.get(itype)
        reply: Json = raw_reply if isinstance(raw_reply, dict) else {}
        fields["interactive_reply"] = InteractiveReply(
            type=itype,
            id=_str(reply.get("id")),
            title=_str(reply.get("title") or reply.get("name")),
            description=_str(reply.get("description")),
        )
        if itype not in {"button_reply", "list_reply"}:
            fields["payload"] = orjson.dumps(obj).decode()  # e.g. nfm_reply (Flows): keep the response
    elif mtype == "button":
        fields["interactive_reply"] = InteractiveReply(
            type="button", id=_str(obj.get("payload")), title=_str(obj.get("text"))
        )
        fields["text"] = _str(obj.get("text"))
    elif mtype == "reaction":
        fields["reaction"] = Reaction(emoji=_str(obj.get("emoji")) or "", target_id=str(obj.get("message_id") or ""))
    else:
        fields["payload"] = orjson.dumps(body if body is not None else {}).decode()
    if kind == "unsupported":
        fields["raw_type"] = mtype
    err = _error(m.get("errors"))
    context = m.get("context")
    if isinstance(context, dict):
        fields["quoted_channel_message_id"] = _str(context.get("id"))
        if context.get("from"):
            meta["context_from"] = str(context["from"])
        if context.get("forwarded"):
            meta["forwarded"] = "true"
        if context.get("frequently_forwarded"):
            meta["frequently_forwarded"] = "true"
    if isinstance(m.get("referral"), dict):
        meta["referral"] = orjson.dumps(m["referral"]).decode()
    return BeaconMessage(
        id=message_id(account, wamid),
        user_key=make_user_key(CHANNEL, account, user),
        channel=CHANNEL,
        account=account,
        user_id=user,
        direction=INBOUND,
        kind=kind,
        profile_name=names.get(user),
        channel_message_id=wamid,
        channel_timestamp=parse_timestamp(m.get("timestamp")),
        error=err,
        metadata=meta,
        **fields,
    )


def _parse_status(s: Any, account: str) -> BeaconMessage:
    if not isinstance(s, dict):
        raise MalformedWebhookError("a status is not an object")
    wamid = s.get("id")
    status = s.get("status")
    if not isinstance(wamid, str) or not wamid or not isinstance(status, str) or not status:
        raise MalformedWebhookError("a status has no id or no status")
    user = str(s.get("recipient_id") or s.get("recipient_user_id") or UNKNOWN_USER)
    meta: dict[str, str] = {}
    conversation = s.get("conversation")
    if isinstance(conversation, dict):
        if conversation.get("id"):
            meta["conversation_id"] = str(conversation["id"])
        origin = conversation.get("origin")
        if isinstance(origin, dict) and origin.get("type"):
            meta["conversation_origin"] = str(origin["type"])
    pricing = s.get("pricing")
    if isinstance(pricing, dict):
        for key in ("category", "pricing_model", "billable", "type"):
            if key in pricing:
                meta[f"pricing_{key}"] = str(pricing[key]).lower() if isinstance(pricing[key], bool) else str(
                    pricing[key]
                )
    opaque = _str(s.get("biz_opaque_callback_data"))
    if opaque:
        meta["biz_opaque_callback_data"] = opaque
    return BeaconMessage.status_update(
        channel=CHANNEL,
        account=account,
        user_id=user,
        channel_message_id=wamid,
        status=status,
        error=_error(s.get("errors")),
        # the gateway sends each message with its BeaconMessage id as biz_opaque_callback_data
        reply_to_id=opaque,
        channel_timestamp=parse_timestamp(s.get("timestamp")),
        metadata=meta,
    )
