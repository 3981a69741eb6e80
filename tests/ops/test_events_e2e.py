"""Events are not questions, end to end: a user's edit, deletion, number change and call-permission reply,
sent by the fake Cloud API over real HTTP through the real gateway, broker, worker and API, get no reply
and change the stored conversation; a later `/ping` is answered `pong` with nothing sent in between."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from beacon.codec import MessageCodec
from beacon.config import Settings
from beacon.kafka import ensure_topics
from beacon.ops.supervisor import Supervisor
from tests.ops.stack import ROUND_TRIP, Stack, wait_for

pytestmark = pytest.mark.slow

USER = "447700900555"


def _event(client: httpx.Client, stack: Stack, event: str, **fields: Any) -> str:
    r = client.post(f"{stack.fake_url}/_fake/event", json={"event": event, "from": USER, **fields})
    assert r.status_code == 200 and r.json()["gateway_status"] == 200, r.text
    return str(r.json()["wamid"])


def _say(client: httpx.Client, stack: Stack, text: str) -> str:
    r = client.post(f"{stack.fake_url}/_fake/say", json={"from": USER, "text": text})
    assert r.status_code == 200 and r.json()["gateway_status"] == 200, r.text
    return str(r.json()["wamid"])


def test_edits_deletions_number_changes_and_call_permissions_are_recorded_and_never_answered(
    registry_settings: Settings, unique: Callable[[str], str], tmp_path: Path
) -> None:
    stack = Stack.create(registry_settings, unique, tmp_path, workers=1)
    s = stack.settings
    ensure_topics(s)
    MessageCodec(s).prepare([s.topics.inbound, s.topics.outbound])
    migrated = stack.beacon("api", "migrate")
    assert migrated.returncode == 0, migrated.stderr
    sup = Supervisor(tmp_path / "logs", report=print)
    try:
        for spec in stack.specs(ROUND_TRIP):
            sup.add(spec)
        wait_for(stack.listening, "the API, gateway and fake to listen", step=sup.poll)
        with httpx.Client(timeout=30) as client:

            def texts() -> list[str]:
                return [i["body"]["text"]["body"] for i in stack.sent(client)]

            hello = _say(client, stack, "see you at 5")
            wait_for(lambda: texts() == ["You said: see you at 5"], "the first reply", step=sup.poll)
            second = _say(client, stack, "oops, wrong chat")
            wait_for(lambda: len(texts()) == 2, "the second reply", step=sup.poll)

            _event(client, stack, "edit", original=hello, text="see you at 6")
            _event(client, stack, "revoke", original=second)
            played = stack.beacon("fake-whatsapp", "event", "call_permission_reply", "--from", USER,
                                  "--url", stack.fake_url)  # the CLI plays an event too
            assert played.returncode == 0 and played.stdout.startswith("wamid."), played.stderr
            _event(client, stack, "user_changed_number", new_wa_id="12195555358")
            _say(client, stack, "/ping")
            # per-user order end to end: any answer to an event would be sent before `pong`
            wait_for(lambda: "pong" in texts(), "the /ping after the events to be answered", step=sup.poll)
            assert texts() == ["You said: see you at 5", "You said: oops, wrong chat", "pong"]

            key = f"whatsapp:{s.whatsapp.phone_number_id}:{USER}"
            api = httpx.Client(base_url=f"http://127.0.0.1:{s.api.port}",
                               headers={"Authorization": f"Bearer {s.api.token.get_secret_value()}"}, timeout=30)
            with api:
                user = api.get(f"/v1/users/{key}").json()
                assert user["new_user_id"] == "12195555358"
                page = api.get(f"/v1/users/{key}/messages", params={"limit": 50}).json()["messages"]
        by_cmid = {m["message"]["channel_message_id"]: m for m in page}
        assert by_cmid[hello]["message"]["text"] == "see you at 6" and by_cmid[hello]["edited_at"]
        assert by_cmid[second]["deleted_at"] and not by_cmid[second]["edited_at"]
        kinds = sorted(m["message"]["kind"] for m in page if m["message"]["direction"] == "inbound")
        assert kinds == ["call_permission", "delete", "edit", "text", "text", "text", "user_changed"]
    finally:
        sup.stop()
