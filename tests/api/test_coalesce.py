"""Coalesced groups at the processing endpoints, over real HTTP, on SQLite and PostgreSQL: one turn, one answer,
recorded, and never a second answer to a message, however a replay groups them."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from beacon.groups import group_id
from beacon.messages import BeaconMessage, stable_id
from tests.api.conftest import ApiServer, as_json, inbound, process


async def send_group(client: httpx.AsyncClient, messages: list[BeaconMessage]) -> httpx.Response:
    gid = group_id([m.id for m in messages])
    return await client.post("/v1/messages/process", json={"messages": [as_json(m) for m in messages]},
                             headers={"Idempotency-Key": gid})


def burst(*texts: str) -> list[BeaconMessage]:
    user = inbound().user_id
    return [inbound(t, user=user) for t in texts]


async def group_rows(database_url: str, gid: str) -> list[tuple[str, int, int]]:
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(text("SELECT message_id, position, size FROM message_groups WHERE group_id = :g "
                                           "ORDER BY position"), {"g": gid})
            return [(r[0], r[1], r[2]) for r in rows]
    finally:
        await engine.dispose()


async def test_a_group_is_one_turn_recorded_and_a_repeat_returns_the_same_replies(api: ApiServer) -> None:
    a, b, c = burst("hi", "I have a question", "about my order 123")
    gid = group_id([a.id, b.id, c.id])
    async with api.client() as client:
        first = await send_group(client, [a, b, c])
        assert first.status_code == 200, first.text
        body = first.json()
        again = (await send_group(client, [a, b, c])).json()
        middle = (await process(client, b)).json()
    assert body["message_id"] == gid and body["duplicate"] is False
    [reply] = body["replies"]
    assert reply["text"] == "You said: hi\nI have a question\nabout my order 123"
    assert reply["id"] == stable_id("reply", gid, "0") and reply["reply_to_id"] == c.id
    assert again["duplicate"] is True and again["replies"] == body["replies"]
    # Any member alone is a repeat too: answered by its group's replies, never again.
    assert middle["duplicate"] is True and middle["replies"] == body["replies"]
    assert await group_rows(api.database_url, gid) == [(a.id, 0, 3), (b.id, 1, 3), (c.id, 2, 3)]


async def test_a_replay_grouping_differently_answers_only_the_messages_not_answered(api: ApiServer) -> None:
    a, b, c, d = burst("one", "two", "three", "four")
    async with api.client() as client:
        ab = (await send_group(client, [a, b])).json()
        abc = (await send_group(client, [a, b, c])).json()
        bcd = (await send_group(client, [b, c, d])).json()
        dup = (await send_group(client, [b, c, d])).json()
    assert [r["text"] for r in ab["replies"]] == ["You said: one\ntwo"]
    # a and b were answered as a group: their stored reply (same id) first, then c answered alone.
    assert [r["text"] for r in abc["replies"]] == ["You said: one\ntwo", "You said: three"]
    assert abc["replies"][0]["id"] == ab["replies"][0]["id"] and abc["replies"][1]["reply_to_id"] == c.id
    assert [r["text"] for r in bcd["replies"]] == ["You said: one\ntwo", "You said: three", "You said: four"]
    assert dup["duplicate"] is True and dup["replies"] == bcd["replies"]


async def test_commands_and_mixed_users_are_refused_as_groups(api: ApiServer) -> None:
    a, ping = burst("hello", "/ping")
    other = inbound("elsewhere")
    async with api.client() as client:
        with_command = await send_group(client, [a, ping])
        two_users = await send_group(client, [a, other])
        wrong_key = await client.post("/v1/messages/process", json={"messages": [as_json(a), as_json(other)]},
                                      headers={"Idempotency-Key": a.id})
        alone = (await process(client, a)).json()
    assert with_command.status_code == 422 and "commands" in with_command.text
    assert two_users.status_code == 422 and "mixes users" in two_users.text
    assert wrong_key.status_code == 422
    assert alone["duplicate"] is False  # nothing of the refused groups was recorded


async def test_the_batch_endpoint_takes_groups_beside_single_messages(api: ApiServer) -> None:
    x, y = burst("photo coming", "here it is")
    z = inbound("/ping")
    async with api.client() as client:
        resp = await client.post("/v1/messages/process-batch",
                                 json={"messages": [{"messages": [as_json(x), as_json(y)]}, as_json(z)]})
    assert resp.status_code == 200, resp.text
    items: dict[int, Any] = {}
    for line in resp.text.splitlines():
        item = httpx.Response(200, content=line).json()
        items[item["index"]] = item
    assert items[0]["status"] == 200 and items[0]["result"]["message_id"] == group_id([x.id, y.id])
    assert [r["text"] for r in items[0]["result"]["replies"]] == ["You said: photo coming\nhere it is"]
    assert [r["text"] for r in items[1]["result"]["replies"]] == ["pong"]
