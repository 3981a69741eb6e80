"""Events through the API on SQLite and PostgreSQL: an edit rewrites the stored message it names, a
deletion marks it deleted (and `/history` leaves it out), a number change is recorded on the user, a
call-permission reply is stored; none of them is answered, and a repeat changes nothing twice."""

from __future__ import annotations

from typing import Any

from beacon.messages import BeaconMessage, Media, stable_id
from tests.api.conftest import ApiServer, inbound, process


def event(of: BeaconMessage, kind: str, n: int, **fields: Any) -> BeaconMessage:
    """An event ``kind`` from the user of ``of``, its own channel id ``n``."""
    cmid = f"{of.channel_message_id}.e{n}"
    return of.model_copy(update={"id": stable_id(of.channel, of.account, cmid), "channel_message_id": cmid,
                                 "kind": kind, "text": None, **fields})


async def test_events_change_the_stored_conversation_and_get_no_reply(api: ApiServer) -> None:
    first = inbound("see you at 5")
    second = inbound("wrong chat", user=first.user_id)
    photo = inbound("", user=first.user_id).model_copy(
        update={"kind": "image", "text": None, "media": Media(id="m1", caption="the blue one")})
    edit = event(first, "edit", 1, text="see you at 6", quoted_channel_message_id=first.channel_message_id)
    recaption = event(first, "edit", 2, text="the red one", quoted_channel_message_id=photo.channel_message_id)
    delete = event(first, "delete", 3, quoted_channel_message_id=second.channel_message_id)
    unknown = event(first, "delete", 4, quoted_channel_message_id="wamid.never-stored")
    call = event(first, "call_permission", 5, metadata={"response": "accept"}, payload='{"response":"accept"}')
    moved = event(first, "user_changed", 6, metadata={"new_user_id": "12195555358"}, text="User changed number")
    async with api.client() as client:
        for msg in (first, second, photo):
            assert (await process(client, msg)).status_code == 200
        for ev in (edit, recaption, delete, unknown, call, moved, edit):  # the repeated edit is a duplicate
            body = (await process(client, ev)).json()
            assert body["replies"] == [] and body["refused"] == [], (ev.kind, body)
        history = (await process(client, inbound("/history", user=first.user_id))).json()["replies"][0]["text"]
        user = (await client.get(f"/v1/users/{first.user_key}")).json()
        page = (await client.get(f"/v1/users/{first.user_key}/messages", params={"limit": 100})).json()["messages"]
    stored = {m["message"]["id"]: m for m in page}
    assert stored[first.id]["message"]["text"] == "see you at 6" and stored[first.id]["edited_at"]
    assert stored[first.id]["message"]["metadata"]["edited_by"] == edit.id
    assert stored[photo.id]["message"]["media"]["caption"] == "the red one" and stored[photo.id]["edited_at"]
    assert stored[second.id]["deleted_at"] and stored[second.id]["message"]["text"] == "wrong chat"
    assert {stored[e.id]["message"]["kind"] for e in (edit, delete, unknown, call, moved)} == {
        "edit", "delete", "call_permission", "user_changed"}
    assert user["new_user_id"] == "12195555358" and user["user_key"] == first.user_key
    # /history shows the conversation as it is now: edited, without the deleted message and the events
    lines = history.splitlines()
    assert "you: see you at 6" in lines and "you: wrong chat" not in lines and "you: see you at 5" not in lines
    assert not any(kind in history for kind in ("[edit]", "[delete]", "[user_changed]", "[call_permission]"))
