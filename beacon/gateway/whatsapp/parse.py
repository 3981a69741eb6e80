"""Cloud API webhook notifications -> BeaconMessages.

A POST may batch many entries, changes, messages and statuses: every one is parsed. Fields that
may be missing are optional; unknown message types become ``unsupported`` with the raw type and
the raw object kept. Ids are derived from the wamid (messages) and from (wamid, status)
(statuses), so a redelivered webhook yields the same ids.

Events are told from what a person wrote: an edit (``edit``), a deletion (``revoke``, or
``unsupported`` standing for a revoke or an edit), a number change (``system``) and a reply to a
call permission request (``interactive`` ``call_permission_reply``) become the event kinds of
``beacon.messages.EVENT_KINDS``, which the pipeline records and never answers. A message Meta could
not deliver whole (an ``interactive`` without its body, with an ``errors`` array) is ``unsupported``
with that error.

One bad item never sinks the batch: a message or status that cannot be attributed (no id, no
usable sender) or that does not parse is dropped with its reason, and the rest are kept. Only a
body that is not a notification at all (not JSON, no entry list, no phone number id) is refused.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any

import orjson

from beacon.errors import BeaconError
from beacon.gateway.records import AVRO_INT
from beacon.gateway.whatsapp import CHANNEL
from beacon.messages import (
    CALL_PERMISSION,
    DELETE,
    EDIT,
    INBOUND,
    USER_CHANGED,
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
#: ``system`` types that say the user's identity changed (the current names and the pre-v12 ones).
USER_CHANGE_TYPES = frozenset(
    {"user_changed_number", "user_changed_user_id", "customer_changed_number", "customer_identity_changed"}
)
UNKNOWN_USER = "unknown"
#: A user id the gateway can key on: a phone number (wa_id) or a business-scoped user id such as ``US.123``.
#: No ``:`` (the user key's separator), no control characters, bounded length.
USER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,63}")
#: Errors a single malformed item can raise while it is parsed (orjson's JSONEncodeError is a TypeError).
ITEM_ERRORS = (ValueError, TypeError, KeyError, AttributeError, RecursionError)

Json = dict[str, Any]


class DroppedItemError(BeaconError):
    """One message or status of a notification that cannot be kept (the others are)."""


@dataclass(frozen=True)
class Dropped:
    """A message or status left out of a notification, and why (for the log and the metrics)."""

    what: str  #: "message" or "status"
    reason: str  #: short, bounded, safe to log
    wamid: str | None = None
    account: str | None = None


@dataclass
class Notification:
    """What a webhook POST yields: the messages and statuses kept, in order, and those dropped."""

    messages: list[BeaconMessage] = field(default_factory=list)
    dropped: list[Dropped] = field(default_factory=list)


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
    """Every message and status of a notification that can be kept, in the order they appear."""
    return parse_notification(body).messages


def parse_notification(body: bytes) -> Notification:
    """Every message and status of a notification, kept or dropped with a reason."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise MalformedWebhookError(f"body is not JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise MalformedWebhookError("body is not a JSON object")
    entries = doc.get("entry")
    if not isinstance(entries, list):
        raise MalformedWebhookError("no entry list")
    out = Notification()
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
            _parse_value(value, out)
    return out


def _parse_value(value: Json, out: Notification) -> None:
    messages = _list(value, "messages")
    statuses = _list(value, "statuses")
    for err in _list(value, "errors"):
        log.warning("WhatsApp reported an error in a webhook (not tied to a message): %s", err)
    if not messages and not statuses:
        return
    metadata = value.get("metadata")
    account = metadata.get("phone_number_id") if isinstance(metadata, dict) else None
    if not isinstance(account, str) or not account:
        raise MalformedWebhookError("value.metadata.phone_number_id is missing")
    names: dict[str, str] = {}
    contacts = _list(value, "contacts")
    for contact in contacts:
        if isinstance(contact, dict):
            who = user_id(contact.get("wa_id") or contact.get("user_id"))
            profile = contact.get("profile")
            name = profile.get("name") if isinstance(profile, dict) else None
            if who and isinstance(name, str | int) and not isinstance(name, bool):
                names[who] = str(name)
    only_contact = None
    if len(contacts) == 1 and isinstance(contacts[0], dict):
        only_contact = user_id(contacts[0].get("wa_id") or contacts[0].get("user_id"))
    for m in messages:
        _keep(out, "message", m, account, partial(_parse_message, m, account, names, only_contact))
    for st in statuses:
        _keep(out, "status", st, account, partial(_parse_status, st, account))


def _keep(out: Notification, what: str, item: Any, account: str, parse: Callable[[], BeaconMessage]) -> None:
    """Parse one item into ``out``; a failure drops that item only."""
    try:
        out.messages.append(parse())
    except (DroppedItemError, *ITEM_ERRORS) as exc:
        wamid = item.get("id") if isinstance(item, dict) else None
        reason = str(exc) if isinstance(exc, DroppedItemError) else f"{type(exc).__name__}: {exc}"
        out.dropped.append(Dropped(what, reason[:200], wamid[:200] if isinstance(wamid, str) else None, account))


def user_id(value: Any) -> str | None:
    """``value`` as a user id to key on, or None when it is not one (missing, an object, NUL bytes...)."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        value = str(value)
    if isinstance(value, str) and USER_ID.fullmatch(value):
        return value
    return None


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
    raw_code = first.get("code")
    details = (first.get("error_data") or {}).get("details") if isinstance(first.get("error_data"), dict) else None
    code = int(raw_code) if isinstance(raw_code, int | str) and str(raw_code).lstrip("-").isdigit() else None
    message = _str(first.get("message"))
    if code is not None and code not in AVRO_INT:  # kept in the text, not in ``code``
        message = f"(code {str(code)[:40]}) {message or ''}".strip()
        code = None
    return StatusError(code=code, title=_str(first.get("title")), message=message, details=_str(details))


def _json_text(obj: Any) -> str:
    """``obj`` as JSON text for ``payload``; a placeholder when it cannot be serialised (nested too deep)."""
    try:
        return orjson.dumps(obj).decode()
    except orjson.JSONEncodeError as exc:
        return orjson.dumps({"beacon_error": f"content not kept: {exc}"[:200]}).decode()


def _parse_message(m: Any, account: str, names: dict[str, str], only_contact: Any) -> BeaconMessage:
    if not isinstance(m, dict):
        raise DroppedItemError("a message is not an object")
    wamid = m.get("id")
    if not isinstance(wamid, str) or not wamid:
        raise DroppedItemError("a message has no id, so a redelivery could not be recognised")
    sender = m.get("from") or m.get("from_user_id") or m.get("user_id")
    user = user_id(sender) if sender is not None else only_contact
    if user is None:
        raise DroppedItemError("a message has no usable sender ('from' is missing or not a user id), so it "
                               "belongs to no conversation")
    raw_type = m.get("type")
    mtype = raw_type[:64] if isinstance(raw_type, str) and raw_type else "unknown"
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
            fields["payload"] = _json_text(obj)
    elif mtype == "contacts":
        fields["payload"] = _json_text(body if body is not None else [])
    elif mtype in {"edit", "revoke", "system", "unsupported"} and (event := _event(mtype, obj, fields, meta)):
        kind = event
    elif mtype == "interactive" and not obj:
        kind = "unsupported"  # Meta sent no body (its reason is in the message's errors, kept in ``error``)
        fields["payload"] = _json_text(body if body is not None else {})
    elif mtype == "interactive" and obj.get("type") == "call_permission_reply":
        kind = CALL_PERMISSION
        reply_obj = obj.get("call_permission_reply")
        answer: Json = reply_obj if isinstance(reply_obj, dict) else {}
        if answer.get("response") is not None:
            meta["response"] = str(answer["response"])
        fields["payload"] = _json_text(answer)
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
            fields["payload"] = _json_text(obj)  # e.g. nfm_reply (Flows): keep the response
    elif mtype == "button":
        fields["interactive_reply"] = InteractiveReply(
            type="button", id=_str(obj.get("payload")), title=_str(obj.get("text"))
        )
        fields["text"] = _str(obj.get("text"))
    elif mtype == "reaction":
        fields["reaction"] = Reaction(emoji=_str(obj.get("emoji")) or "", target_id=str(obj.get("message_id") or ""))
    else:
        fields["payload"] = _json_text(body if body is not None else {})
    if kind == "unsupported":
        fields["raw_type"] = mtype
    err = _error(m.get("errors"))
    context = m.get("context")
    if isinstance(context, dict):
        fields.setdefault("quoted_channel_message_id", _str(context.get("id")))  # an edit's target comes first
        if context.get("from"):
            meta["context_from"] = str(context["from"])
        if context.get("forwarded"):
            meta["forwarded"] = "true"
        if context.get("frequently_forwarded"):
            meta["frequently_forwarded"] = "true"
    if isinstance(m.get("referral"), dict):
        meta["referral"] = _json_text(m["referral"])
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


def _event(mtype: str, obj: Json, fields: dict[str, Any], meta: dict[str, str]) -> str | None:
    """The event kind of an ``edit``, ``revoke``, ``system`` or ``unsupported`` message, filling ``fields``
    and ``meta``; None when it is no event (an ``unsupported`` poll, an unknown ``system`` type).

    Shapes: Meta's webhook reference, messages/edit, messages/revoke and messages/system
    (developers.facebook.com/documentation/business-messaging/whatsapp/webhooks/reference/messages/)."""
    if mtype == "revoke":
        fields["quoted_channel_message_id"] = _str(obj.get("original_message_id"))
        fields["raw_type"] = mtype
        return DELETE
    if mtype == "edit":
        fields["quoted_channel_message_id"] = _str(obj.get("original_message_id"))
        fields["raw_type"] = mtype
        edited = obj.get("message")
        if isinstance(edited, dict):
            etype = edited.get("type")
            content = edited.get(etype) if isinstance(etype, str) else None
            if isinstance(content, dict):
                if etype == "text":
                    fields["text"] = _str(content.get("body"))
                elif etype in MEDIA_TYPES:
                    fields["text"] = _str(content.get("caption"))
                    fields["media"] = Media(id=_str(content.get("id")), mime_type=_str(content.get("mime_type")),
                                            caption=_str(content.get("caption")),
                                            filename=_str(content.get("filename")))
            if isinstance(etype, str):
                meta["edited_type"] = etype[:64]
        return EDIT
    if mtype == "system":
        stype = _str(obj.get("type"))
        if stype not in USER_CHANGE_TYPES:
            return None
        meta["system_type"] = stype or ""
        new_id = user_id(obj.get("wa_id") or obj.get("new_wa_id") or obj.get("user_id"))
        if new_id:
            meta["new_user_id"] = new_id
        fields["text"] = _str(obj.get("body"))
        fields["raw_type"] = mtype
        return USER_CHANGED
    # ``unsupported`` names the type Meta did not deliver: a revoke or an edit is still an event
    inner = obj.get("type")
    if isinstance(inner, str) and inner in {"revoke", "edit"}:
        fields["raw_type"] = f"unsupported:{inner}"
        return DELETE if inner == "revoke" else EDIT
    return None


def _parse_status(s: Any, account: str) -> BeaconMessage:
    if not isinstance(s, dict):
        raise DroppedItemError("a status is not an object")
    wamid = s.get("id")
    status = s.get("status")
    if not isinstance(wamid, str) or not wamid or not isinstance(status, str) or not status:
        raise DroppedItemError("a status has no id or no status")
    # a status is about a message the gateway sent: without a recipient it is still worth recording
    user = user_id(s.get("recipient_id") or s.get("recipient_user_id")) or UNKNOWN_USER
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
