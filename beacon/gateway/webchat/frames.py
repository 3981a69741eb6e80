"""The chat page's WebSocket frames (JSON) to and from BeaconMessages.

From the page: ``{"type": "hello", "after": <seq>}`` (replay what follows), and ``{"type": "send",
"client_id": ..., "text": ...}`` or ``{"type": "send", "client_id": ..., "reply": {"type":
"button_reply"|"list_reply", "id": ..., "title": ...}}`` (a button pressed). To the page:
``{"type": "message", "seq", "id", "from": "user"|"bot", "kind", "text", ...}`` and ``{"type":
"error", "client_id", "code", "message"}``. Buttons and lists of an outbound ``interactive``
message (the Cloud API's shape in ``payload``) are flattened here, so the page only lays them out.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from beacon.errors import BeaconError
from beacon.gateway.webchat import CHANNEL
from beacon.messages import INBOUND, BeaconMessage, InteractiveReply, make_user_key, stable_id

Frame = dict[str, Any]

#: A client message id: what the page generates (a UUID), bounded.
CLIENT_ID = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
REPLY_TYPES = frozenset({"button_reply", "list_reply"})


class BadFrameError(BeaconError):
    """A frame from the page that is not one Beacon understands (answered with an error frame)."""

    def __init__(self, code: str, message: str, client_id: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.client_id = client_id


def parse_frame(raw: str) -> Frame:
    """The JSON object of a text frame."""
    try:
        frame = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadFrameError("bad_request", "the frame is not JSON") from exc
    if not isinstance(frame, dict):
        raise BadFrameError("bad_request", "the frame is not a JSON object")
    return frame


def _short(value: Any, name: str, limit: int, client_id: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise BadFrameError("bad_request", f"{name} is missing", client_id)
    if len(value) > limit:
        raise BadFrameError("too_large", f"Your message is too long ({len(value)} characters; at most {limit}).",
                            client_id)
    return value


def inbound_message(frame: Frame, *, site: str, visitor: str, max_chars: int) -> BeaconMessage:
    """The BeaconMessage of a ``send`` frame. Its id derives from the visitor and the page's own id, so a
    resend after a dropped connection is the same message (deduplicated), and no visitor can collide with
    another's."""
    client_id = frame.get("client_id")
    if not isinstance(client_id, str) or not CLIENT_ID.match(client_id):
        raise BadFrameError("bad_request", "client_id must be 8-64 letters, digits, '-' or '_'")
    common: dict[str, Any] = {
        "id": stable_id(CHANNEL, site, visitor, client_id),
        "user_key": make_user_key(CHANNEL, site, visitor),
        "channel": CHANNEL,
        "account": site,
        "user_id": visitor,
        "direction": INBOUND,
        "channel_message_id": client_id,
    }
    reply = frame.get("reply")
    if reply is not None:
        if not isinstance(reply, dict) or reply.get("type") not in REPLY_TYPES:
            raise BadFrameError("bad_request", "reply must be a button_reply or list_reply", client_id)
        chosen = InteractiveReply(type=reply["type"], id=_short(reply.get("id"), "reply id", 256, client_id),
                                  title=_short(reply.get("title"), "reply title", 256, client_id))
        return BeaconMessage(**common, kind="interactive", interactive_reply=chosen)
    return BeaconMessage(**common, kind="text", text=_short(frame.get("text"), "text", max_chars, client_id))


def _interactive(payload: str | None) -> Frame | None:
    """Buttons and list rows of a Cloud API-shaped interactive object, flattened for the page."""
    try:
        obj = orjson.loads(payload or "null")
    except orjson.JSONDecodeError:
        return None
    if not isinstance(obj, dict):
        return None
    action: Frame = obj["action"] if isinstance(obj.get("action"), dict) else {}
    body: Frame = obj["body"] if isinstance(obj.get("body"), dict) else {}
    out: Frame = {"body": str(body.get("text") or "")}
    buttons = []
    for b in action.get("buttons") or []:
        reply = b.get("reply") if isinstance(b, dict) else None
        if isinstance(reply, dict) and reply.get("id"):
            buttons.append({"id": str(reply["id"]), "title": str(reply.get("title") or reply["id"])})
    if buttons:
        out["buttons"] = buttons
    sections = []
    for section in action.get("sections") or []:
        if not isinstance(section, dict):
            continue
        rows = [{"id": str(r["id"]), "title": str(r.get("title") or r["id"]),
                 "description": str(r.get("description") or "")}
                for r in section.get("rows") or [] if isinstance(r, dict) and r.get("id")]
        if rows:
            sections.append({"title": str(section.get("title") or ""), "rows": rows})
    if sections:
        out["list"] = {"label": str(action.get("button") or "Choose"), "sections": sections}
    return out


def message_frame(msg: BeaconMessage, sender: str) -> Frame:
    """What the page shows of one message (``sender``: ``user`` or ``bot``); ``seq`` is added by the history."""
    frame: Frame = {"type": "message", "id": msg.id, "from": sender, "kind": msg.kind, "text": msg.text}
    if sender == "user":
        frame["client_id"] = msg.channel_message_id
        if msg.interactive_reply is not None:
            frame["text"] = msg.interactive_reply.title
    if msg.media is not None:
        frame["media"] = {"link": msg.media.link, "caption": msg.media.caption, "mime_type": msg.media.mime_type,
                          "filename": msg.media.filename}
    if msg.kind == "interactive" and sender == "bot":
        frame["interactive"] = _interactive(msg.payload)
    if msg.location is not None:
        frame["text"] = msg.location.name or f"{msg.location.latitude}, {msg.location.longitude}"
    return frame


def error_frame(code: str, message: str, client_id: str | None = None, **extra: Any) -> Frame:
    return {"type": "error", "code": code, "message": message, "client_id": client_id, **extra}
