"""The customer-service window: free-form messages only within N hours of the user's last message.

A WhatsApp rule (Cloud API: outside 24 hours only templates): other channels (Telegram, web chat,
Nostr) have no such window, so messages to their users always go out as they are."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from beacon.config import Settings
from beacon.messages import BeaconMessage

#: Kinds allowed outside the window (WhatsApp: templates; marking read is not a message).
ALWAYS_ALLOWED = frozenset({"template", "read_receipt"})


@dataclass(frozen=True)
class Refusal:
    message_id: str
    reason: str


#: Channels with a customer-service window.
WINDOWED_CHANNELS = frozenset({"whatsapp"})


def window_open(settings: Settings, last_inbound: datetime | None, now: datetime, *, channel: str) -> bool:
    """Whether a free-form message to a user of ``channel`` who last wrote at ``last_inbound`` may go out now."""
    if channel not in WINDOWED_CHANNELS:
        return True
    return last_inbound is not None and now - last_inbound <= timedelta(hours=settings.api.window_hours)


def apply_window(
    settings: Settings, messages: list[BeaconMessage], last_inbound: datetime | None, now: datetime
) -> tuple[list[BeaconMessage], list[Refusal]]:
    """Messages allowed to go out: free-form ones to a WhatsApp user outside the window become the configured
    template, or are refused with a reason; messages to users of other channels go out as they are."""
    allowed: list[BeaconMessage] = []
    refused: list[Refusal] = []
    when = last_inbound.isoformat() if last_inbound else "never"
    for msg in messages:
        if msg.kind in ALWAYS_ALLOWED or window_open(settings, last_inbound, now, channel=msg.channel):
            allowed.append(msg)
        elif settings.api.window_template:
            allowed.append(
                msg.model_copy(
                    update={
                        "kind": "template",
                        "text": None,
                        "media": None,
                        "payload": settings.api.window_template,
                        "metadata": {**msg.metadata, "window": "template"},
                    }
                )
            )
        else:
            refused.append(
                Refusal(
                    msg.id,
                    f"outside WhatsApp's {settings.api.window_hours:g}-hour customer-service window "
                    f"(the user last wrote {when}): only template messages may be sent; set "
                    f"BEACON_WINDOW_TEMPLATE to send a template "
                    "instead",
                )
            )
    return allowed, refused
