"""The console's Conversations page shows who answers each user and the handoff events of a timeline."""

from __future__ import annotations

from typing import Any

from beacon.console import pages
from beacon.console.conversations import Step
from beacon.messages import HANDED_OFF, STATUS, BeaconMessage


def test_users_list_who_answers_them() -> None:
    users: list[dict[str, Any]] = [
        {"user_key": "whatsapp:1:2", "handoff": "operator", "handoff_by": "alice", "window_open": True},
        {"user_key": "whatsapp:1:3", "handoff": None, "window_open": True},
    ]
    html = pages.conversations_search("whatsapp", users, None)
    assert "answered by" in html and "operator (alice)" in html and "<td>bot</td>" in html


def test_a_timeline_shows_a_handoff_event() -> None:
    event = BeaconMessage(id="e1", user_key="whatsapp:1:2", channel="whatsapp", account="1", user_id="2",
                          direction=STATUS, kind=HANDED_OFF, text="Handed to a human by alice: refund")
    html = pages.timeline("whatsapp:1:2", [Step(event, None, None, [])])
    assert "handed_off" in html and "Handed to a human by alice: refund" in html
