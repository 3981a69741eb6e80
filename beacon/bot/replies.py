"""Outbound messages a handler answers with. Addressing and ids are filled in by the pipeline
(``beacon.api.pipeline.as_replies``), so each is built with placeholders here. Interactive and
template payloads follow the WhatsApp Cloud API shapes (other channels' gateways map them)."""

from __future__ import annotations

from typing import Any

import orjson

from beacon.messages import OUTBOUND, BeaconMessage, Location, Media

#: Kinds of media a reply may carry.
MEDIA_KINDS = frozenset({"image", "audio", "video", "document", "sticker"})
#: Most reply buttons on one message (WhatsApp's limit).
MAX_BUTTONS = 3


def _outbound(kind: str, **fields: Any) -> BeaconMessage:
    return BeaconMessage(
        id="pending", user_key="pending", channel="pending", account="pending", user_id="pending",
        direction=OUTBOUND, kind=kind, **fields,
    )


def text(body: str) -> BeaconMessage:
    """A text reply."""
    return _outbound("text", text=body)


def buttons(body: str, choices: dict[str, str] | list[str], *, footer: str | None = None) -> BeaconMessage:
    """Text with reply buttons, ``{id: title}`` or titles (each its own id)."""
    pairs = choices if isinstance(choices, dict) else {title: title for title in choices}
    if not 1 <= len(pairs) <= MAX_BUTTONS:
        raise ValueError(f"reply buttons take 1 to {MAX_BUTTONS} choices, got {len(pairs)}")
    interactive: dict[str, Any] = {
        "type": "button",
        "body": {"text": body},
        "action": {"buttons": [{"type": "reply", "reply": {"id": i, "title": t}} for i, t in pairs.items()]},
    }
    if footer:
        interactive["footer"] = {"text": footer}
    return _outbound("interactive", text=body, payload=orjson.dumps(interactive).decode())


def choice_list(body: str, button: str, rows: dict[str, str], *, section: str = "Options") -> BeaconMessage:
    """Text with a list menu opened by ``button``; ``rows`` is ``{id: title}``."""
    interactive = {
        "type": "list",
        "body": {"text": body},
        "action": {
            "button": button,
            "sections": [{"title": section, "rows": [{"id": i, "title": t} for i, t in rows.items()]}],
        },
    }
    return _outbound("interactive", text=body, payload=orjson.dumps(interactive).decode())


def media(kind: str, *, link: str | None = None, media_id: str | None = None, caption: str | None = None,
          filename: str | None = None) -> BeaconMessage:
    """An image, audio, video, document or sticker, by link or the channel's media id."""
    if kind not in MEDIA_KINDS:
        raise ValueError(f"media kind must be one of {sorted(MEDIA_KINDS)}, not {kind!r}")
    if not (link or media_id):
        raise ValueError("a media reply needs a link or a media id")
    return _outbound(kind, media=Media(id=media_id, link=link, caption=caption, filename=filename))


def location(where: Location) -> BeaconMessage:
    """A map pin."""
    return _outbound("location", location=where)


def template(name: str, language: str = "en", components: list[Any] | None = None) -> BeaconMessage:
    """An approved message template by name and language code."""
    body: dict[str, Any] = {"name": name, "language": {"code": language}}
    if components:
        body["components"] = components
    return _outbound("template", payload=orjson.dumps(body).decode())
