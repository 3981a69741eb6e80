"""Human handoff over real HTTP on both databases: an operator takes over and the bot stays silent, the
user asks for a human with ``/human``, hand back resumes answers, the timeline shows each change and the
gauge counts conversations waiting for a person."""

from __future__ import annotations

import re
from typing import Any

import httpx

from tests.api.conftest import ApiServer, inbound, process


async def _waiting(client: httpx.AsyncClient) -> float:
    found = re.search(r"^beacon_api_handoff_waiting (\S+)$", (await client.get("/metrics")).text, re.M)
    assert found, "no beacon_api_handoff_waiting gauge in /metrics"
    return float(found.group(1))


async def _timeline(client: httpx.AsyncClient, user_key: str) -> list[dict[str, Any]]:
    """The user's messages, oldest first."""
    page = (await client.get(f"/v1/users/{user_key}/messages", params={"limit": 100})).json()
    return [m["message"] for m in reversed(page["messages"])]


async def _replies(client: httpx.AsyncClient, text: str, user: str) -> list[str]:
    resp = await process(client, inbound(text, user=user))
    assert resp.status_code == 200, resp.text
    return [r["text"] for r in resp.json()["replies"]]


async def test_operator_takeover_silences_the_bot_until_handed_back(api: ApiServer) -> None:
    first = inbound("hello")
    user, key = first.user_id, first.user_key
    async with api.client() as client:
        assert (await process(client, first)).json()["replies"][0]["text"] == "You said: hello"

        taken = await client.put(f"/v1/users/{key}/handoff", json={"operator": "alice", "reason": "billing"})
        assert taken.status_code == 200, taken.text
        assert taken.json()["handoff"] == "operator" and taken.json()["handoff_by"] == "alice"

        # Processed and recorded (the answer is the proof it finished), and nothing answered.
        assert await _replies(client, "are you there?", user) == []
        assert await _replies(client, "/ping", user) == []

        back = await client.delete(f"/v1/users/{key}/handoff", params={"operator": "alice"})
        assert back.status_code == 200 and back.json()["handoff"] is None
        assert await _replies(client, "thanks", user) == ["You said: thanks"]

        timeline = [(m["kind"], m["text"]) for m in await _timeline(client, key)]
    assert timeline == [
        ("text", "hello"),
        ("text", "You said: hello"),
        ("handed_off", "Handed to a human by alice: billing"),
        ("text", "are you there?"),
        ("text", "/ping"),
        ("handed_back", "Handed back to the bot by alice"),
        ("text", "thanks"),
        ("text", "You said: thanks"),
    ]


async def test_handoff_of_an_unknown_user_is_404(api: ApiServer) -> None:
    async with api.client() as client:
        resp = await client.put("/v1/users/whatsapp:1:nobody/handoff", json={"operator": "alice"})
        assert resp.status_code == 404
        assert (await client.delete("/v1/users/whatsapp:1:nobody/handoff", params={"operator": "a"})).status_code == 404


async def test_human_command_waits_for_a_person_and_the_gauge_counts_it(api: ApiServer) -> None:
    ask = inbound("/human")
    user, key = ask.user_id, ask.user_key
    async with api.client() as client:
        before = await _waiting(client)
        first = await process(client, ask)
        assert [r["text"] for r in first.json()["replies"]] == ["A person from our team will answer you here soon."]
        assert (await client.get(f"/v1/users/{key}")).json()["handoff"] == "waiting"
        assert await _waiting(client) == before + 1

        # A replay of the same message answers the same reply and records no second event.
        again = await process(client, ask)
        assert again.json()["duplicate"] is True and again.json()["replies"] == first.json()["replies"]
        assert await _replies(client, "hello?", user) == []

        await client.put(f"/v1/users/{key}/handoff", json={"operator": "bob"})
        assert await _waiting(client) == before  # taken: a person answers, nobody waits
        await client.delete(f"/v1/users/{key}/handoff", params={"operator": "bob"})
        assert await _replies(client, "hi", user) == ["You said: hi"]

        events = [(m["kind"], m["metadata"]) for m in await _timeline(client, key) if m["kind"] != "text"]
    assert events == [
        ("handed_off", {"by": "user", "reason": "the user asked for a human (/human)", "handoff": "waiting"}),
        ("handed_off", {"by": "bob", "handoff": "operator"}),
        ("handed_back", {"by": "bob"}),
    ]
