"""What the fake answers like the Cloud API: request validation and Meta's error shapes."""

from __future__ import annotations

import secrets
from typing import Any

Json = dict[str, Any]

SENDABLE_TYPES = frozenset({"text", "image", "audio", "video", "document", "sticker", "interactive", "template",
                            "reaction", "location", "contacts"})
MEDIA_TYPES = frozenset({"image", "audio", "video", "document", "sticker"})

#: code -> (HTTP status, message, error_user_title) as Meta answers them.
ERRORS: dict[int, tuple[int, str, str]] = {
    190: (401, "Error validating access token: Session has expired.", "Access token expired"),
    4: (400, "(#4) Application request limit reached", "Rate limit"),
    80007: (400, "(#80007) Rate limit issues", "Rate limit"),
    130429: (429, "(#130429) Rate limit hit", "Cloud API message throughput has been reached."),
    131056: (400, "(#131056) (Business Account, Consumer Account) pair rate limit hit", "Pair rate limit hit"),
    131000: (500, "Something went wrong", "Something went wrong"),
    131016: (503, "Service unavailable", "Service unavailable"),
    2: (503, "Service temporarily unavailable", "Service unavailable"),
    131057: (503, "Business Account is in maintenance mode", "Account in maintenance mode"),
    100: (400, "(#100) Invalid parameter", "Invalid parameter"),
    131008: (400, "(#131008) Required parameter is missing", "Required parameter is missing"),
    131009: (400, "(#131009) Parameter value is not valid", "Parameter value is not valid"),
    131026: (400, "(#131026) Message Undeliverable", "Message undeliverable"),
    131047: (400, "(#131047) Re-engagement message", "More than 24 hours have passed since the customer last "
             "replied to this number."),
    131050: (400, "(#131050) User has stopped marketing messages", "User opted out"),
    131051: (400, "(#131051) Unsupported message type", "Unsupported message type"),
    132001: (404, "(#132001) Template name does not exist in the translation", "Template does not exist"),
    368: (403, "Temporarily blocked for policies violations", "Account restricted"),
}


def error_body(code: int, details: str | None = None, message: str | None = None) -> tuple[int, Json]:
    """(HTTP status, body) of a Cloud API error with ``code``."""
    status, default_message, title = ERRORS.get(code, (400, f"(#{code}) Error", "Error"))
    err: Json = {
        "message": message or default_message,
        "type": "OAuthException",
        "code": code,
        "error_data": {"messaging_product": "whatsapp", "details": details or title},
        "error_user_title": title,
        "fbtrace_id": "A" + secrets.token_urlsafe(16),
    }
    if code == 190:
        err["error_subcode"] = 463
        del err["error_data"]
    return status, {"error": err}


class InvalidRequest(Exception):
    """A send request the Cloud API would refuse with ``code`` (100 / 131008 / 131009)."""

    def __init__(self, code: int, details: str) -> None:
        super().__init__(details)
        self.code = code
        self.details = details


def validate_send(body: Any) -> None:
    """Raise InvalidRequest where the Cloud API would refuse the body."""
    if not isinstance(body, dict):
        raise InvalidRequest(100, "The request body must be a JSON object")
    if body.get("messaging_product") != "whatsapp":
        raise InvalidRequest(100, "messaging_product must be whatsapp")
    if body.get("status") == "read":
        if not body.get("message_id"):
            raise InvalidRequest(131008, "message_id is required to mark a message as read")
        typing = body.get("typing_indicator")
        if typing is not None and typing != {"type": "text"}:
            raise InvalidRequest(100, 'typing_indicator must be {"type": "text"}')
        return
    if not body.get("to"):
        raise InvalidRequest(131008, "to is required")
    mtype = body.get("type", "text")
    if mtype not in SENDABLE_TYPES:
        raise InvalidRequest(131051 if isinstance(mtype, str) else 100, f"unsupported message type {mtype!r}")
    obj = body.get(mtype)
    if mtype == "contacts":
        if not isinstance(obj, list) or not obj:
            raise InvalidRequest(131008, "contacts must be a non-empty list")
        return
    if not isinstance(obj, dict):
        raise InvalidRequest(131008, f"{mtype} object is required")
    if mtype == "text":
        text = obj.get("body")
        if not isinstance(text, str) or not text:
            raise InvalidRequest(131008, "text.body is required")
        if len(text) > 4096:
            raise InvalidRequest(100, "text.body is longer than 4096 characters")
    elif mtype in MEDIA_TYPES:
        if not obj.get("id") and not obj.get("link"):
            raise InvalidRequest(131008, f"{mtype} needs an id or a link")
    elif mtype == "interactive":
        _validate_interactive(obj)
    elif mtype == "template":
        if not obj.get("name") or not isinstance(obj.get("language"), dict) or not obj["language"].get("code"):
            raise InvalidRequest(131008, "template needs a name and language.code")
    elif mtype == "reaction":
        if not obj.get("message_id"):
            raise InvalidRequest(131008, "reaction.message_id is required")
    elif mtype == "location" and ("latitude" not in obj or "longitude" not in obj):
        raise InvalidRequest(131008, "location needs latitude and longitude")


def _validate_interactive(obj: Json) -> None:
    itype = obj.get("type")
    action = obj.get("action")
    if itype not in {"button", "list", "cta_url", "product", "product_list", "flow", "location_request_message"}:
        raise InvalidRequest(100, f"interactive.type {itype!r} is not valid")
    if not isinstance(action, dict):
        raise InvalidRequest(131008, "interactive.action is required")
    if itype in {"button", "list"} and not isinstance(obj.get("body"), dict):
        raise InvalidRequest(131008, "interactive.body is required")
    if itype == "button":
        buttons = action.get("buttons")
        if not isinstance(buttons, list) or not 1 <= len(buttons) <= 3:
            raise InvalidRequest(131009, "interactive buttons: between 1 and 3 are allowed")
        for b in buttons:
            title = (b.get("reply") or {}).get("title") if isinstance(b, dict) else None
            if not isinstance(title, str) or not 1 <= len(title) <= 20:
                raise InvalidRequest(131009, "a button title must have 1 to 20 characters")
    if itype == "list":
        sections = action.get("sections")
        if not action.get("button") or not isinstance(sections, list) or not sections:
            raise InvalidRequest(131009, "a list needs action.button and sections")
        rows = sum(len(s.get("rows") or []) for s in sections if isinstance(s, dict))
        if not 1 <= rows <= 10:
            raise InvalidRequest(131009, "a list must have 1 to 10 rows")
