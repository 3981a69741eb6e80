"""Human handoff end to end: through the fake Cloud API, the real gateway, broker, worker and API, an
operator takes a conversation over, the bot stays silent, the operator's messages reach the user in order
through the same gateway, and after the hand back the bot answers again."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from beacon.codec import MessageCodec
from beacon.config import Settings
from beacon.kafka import ensure_topics
from beacon.ops.supervisor import Supervisor
from tests.ops.stack import ROUND_TRIP, Stack, wait_for

pytestmark = pytest.mark.slow

USER = "447700900777"


def test_an_operator_takes_over_speaks_in_order_and_hands_back(
    registry_settings: Settings, unique: Callable[[str], str], tmp_path: Path
) -> None:
    stack = Stack.create(registry_settings, unique, tmp_path, workers=1)
    s = stack.settings
    ensure_topics(s)
    MessageCodec(s).prepare([s.topics.inbound, s.topics.outbound])
    migrated = stack.beacon("api", "migrate")
    assert migrated.returncode == 0, migrated.stderr
    key = f"whatsapp:{s.whatsapp.phone_number_id}:{USER}"
    sup = Supervisor(tmp_path / "logs", report=print)
    try:
        for spec in stack.specs(ROUND_TRIP):
            sup.add(spec)
        wait_for(stack.listening, "the API, gateway and fake to listen", step=sup.poll)
        api = httpx.Client(base_url=f"http://127.0.0.1:{s.api.port}",
                           headers={"Authorization": f"Bearer {s.api.token.get_secret_value()}"}, timeout=30)
        with httpx.Client(timeout=30) as client, api:

            def texts() -> list[str]:
                return [i["body"]["text"]["body"] for i in stack.sent(client)]

            stack.say(client, USER, "hello")
            wait_for(lambda: texts() == ["You said: hello"], "the bot's first reply", step=sup.poll)

            taken = api.put(f"/v1/users/{key}/handoff", json={"operator": "alice", "reason": "refund"})
            assert taken.status_code == 200, taken.text
            stack.say(client, USER, "I want my money back")
            for text in ("Hi, Alice here.", "Let me check your order."):
                sent = api.post("/v1/messages/send", json={"channel": "whatsapp", "account": s.whatsapp.phone_number_id,
                                                           "user_id": USER, "kind": "text", "text": text})
                assert sent.status_code == 202, sent.text
            wait_for(lambda: len(texts()) == 3, "the operator's messages", step=sup.poll)

            assert api.delete(f"/v1/users/{key}/handoff", params={"operator": "alice"}).status_code == 200
            stack.say(client, USER, "/ping")
            # Per-user order end to end: a bot answer to the message written while handed off comes before `pong`.
            wait_for(lambda: "pong" in texts(), "the /ping after the hand back to be answered", step=sup.poll)
            assert texts() == ["You said: hello", "Hi, Alice here.", "Let me check your order.", "pong"]

            page = api.get(f"/v1/users/{key}/messages", params={"limit": 50}).json()["messages"]
        timeline = [(m["message"]["kind"], m["message"]["text"]) for m in reversed(page)]
        assert ("handed_off", "Handed to a human by alice: refund") in timeline
        assert ("text", "I want my money back") in timeline
        assert timeline.index(("handed_off", "Handed to a human by alice: refund")) < timeline.index(
            ("handed_back", "Handed back to the bot by alice"))
    finally:
        sup.stop()
