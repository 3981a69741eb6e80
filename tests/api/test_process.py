"""The processing endpoint over real HTTP against a real server, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from beacon.messages import BeaconMessage, Media, utcnow
from tests.api.conftest import ApiServer, as_json, inbound, process


async def test_default_pipeline_answers_commands_and_echoes_text(api: ApiServer) -> None:
    async with api.client() as client:
        for text, expected in [("/ping", "pong"), ("hello there", "You said: hello there")]:
            msg = inbound(text)
            resp = await process(client, msg)
            assert resp.status_code == 200, resp.text
            body = resp.json()
            assert body["message_id"] == msg.id and body["duplicate"] is False
            [reply] = [BeaconMessage.model_validate(r) for r in body["replies"]]
            assert reply.text == expected
            assert reply.direction == "outbound" and reply.reply_to_id == msg.id
            assert (reply.user_key, reply.channel, reply.account, reply.user_id) == (
                msg.user_key,
                msg.channel,
                msg.account,
                msg.user_id,
            )
            assert reply.id == msg.reply_text(expected, index=0).id
        help_reply = (await process(client, inbound("/help"))).json()["replies"][0]["text"]
        for command in ("/ping", "/help", "/reset", "/history"):
            assert command in help_reply


async def test_non_text_messages_get_a_short_acknowledgement(api: ApiServer) -> None:
    base = inbound("x")
    image = base.model_copy(
        update={"kind": "image", "text": None, "media": Media(id="media-1", mime_type="image/jpeg")}
    )
    async with api.client() as client:
        body = (await process(client, image)).json()
    assert [r["text"] for r in body["replies"]] == ["Got your image, thanks."]


async def test_repeat_returns_the_stored_replies_without_running_the_pipeline(api: ApiServer) -> None:
    user = inbound().user_id
    async with api.client() as client:
        await process(client, inbound("first", user=user))
        history = inbound("/history", user=user)
        first = (await process(client, history)).json()
        await process(client, inbound("later", user=user))
        again = (await process(client, history)).json()
    assert first["duplicate"] is False and again["duplicate"] is True
    # Re-running /history now would list "later" too: the stored answer proves it did not run.
    assert again["replies"] == first["replies"]
    assert "later" not in again["replies"][0]["text"] and "first" in again["replies"][0]["text"]


async def test_concurrent_duplicates_are_settled_by_the_database(api: ApiServer) -> None:
    msg = inbound("same message, many times")
    async with api.client() as client:
        responses = await asyncio.gather(*(process(client, msg) for _ in range(12)))
        assert all(r.status_code == 200 for r in responses), [r.text for r in responses]
        bodies = [r.json() for r in responses]
        assert sum(1 for b in bodies if not b["duplicate"]) == 1
        assert all(b["replies"] == bodies[0]["replies"] for b in bodies)
        page = (await client.get(f"/v1/users/{msg.user_key}/messages")).json()
    assert len(page["messages"]) == 2  # the inbound message and its one reply, stored once


async def test_reset_forgets_the_conversation(api: ApiServer) -> None:
    user = inbound().user_id
    async with api.client() as client:
        await process(client, inbound("remember me", user=user))
        reset = (await process(client, inbound("/reset", user=user))).json()
        assert "forgot" in reset["replies"][0]["text"]
        after = (await process(client, inbound("/history", user=user))).json()
        assert after["replies"][0]["text"] == "No messages yet."
        await process(client, inbound("new start", user=user))
        shown = (await process(client, inbound("/history", user=user))).json()["replies"][0]["text"]
    assert "new start" in shown and "remember me" not in shown


async def test_delivery_state_only_moves_forward(api: ApiServer) -> None:
    msg = inbound("track my reply")
    async with api.client() as client:
        reply = (await process(client, msg)).json()["replies"][0]
        wamid = f"wamid.out.{msg.id}"

        async def status(state: str) -> dict[str, object]:
            st = BeaconMessage.status_update(
                channel="whatsapp",
                account=msg.account,
                user_id=msg.user_id,
                channel_message_id=wamid,
                status=state,
                reply_to_id=reply["id"],
            )
            resp = await process(client, st)
            assert resp.status_code == 200, resp.text
            return resp.json()  # type: ignore[no-any-return]

        for state in ("sent", "read"):
            assert (await status(state))["replies"] == []
        late = await status("delivered")
        assert late["duplicate"] is False and late["replies"] == []
        assert (await status("delivered"))["duplicate"] is True
        page = (await client.get(f"/v1/users/{msg.user_key}/messages")).json()
    states = {m["message"]["id"]: m["delivery_status"] for m in page["messages"]}
    assert states[reply["id"]] == "read"


async def test_wrong_or_missing_token_is_401(api: ApiServer) -> None:
    msg = inbound()
    for token in (None, "wrong-token"):
        async with api.client(token=token) as client:
            resp = await process(client, msg)
            assert resp.status_code == 401
            assert "BEACON_API_TOKEN" in resp.json()["detail"]
    async with api.client() as client:
        assert (await client.get(f"/v1/users/{msg.user_key}")).status_code == 404  # nothing stored


async def test_bad_input_is_422_and_stores_nothing(api: ApiServer) -> None:
    msg = inbound("never stored")
    async with api.client() as client:
        broken = as_json(msg)
        del broken["user_key"]
        resp = await client.post("/v1/messages/process", json=broken)
        assert resp.status_code == 422 and "user_key" in resp.text
        outbound = msg.model_copy(update={"direction": "outbound"})
        resp = await process(client, outbound)
        assert resp.status_code == 422 and "direction" in resp.json()["detail"]
        resp = await client.post("/v1/messages/process", json=as_json(msg), headers={"Idempotency-Key": "other"})
        assert resp.status_code == 422 and "Idempotency-Key" in resp.json()["detail"]
        assert (await client.get(f"/v1/users/{msg.user_key}")).status_code == 404


async def test_reply_outside_the_window_is_refused_with_a_reason(api: ApiServer) -> None:
    old = inbound("from yesterday", channel_timestamp=utcnow() - timedelta(hours=25))
    async with api.client() as client:
        body = (await process(client, old)).json()
    assert body["replies"] == []
    [refused] = body["refused"]
    assert "24-hour" in refused["reason"] and "BEACON_WINDOW_TEMPLATE" in refused["reason"]


async def test_health_ready_and_metrics(api: ApiServer) -> None:
    async with api.client(token=None) as client:
        assert (await client.get("/healthz")).status_code == 200
        assert (await client.get("/readyz")).json()["database"] == "ok"
        await process(client, inbound())  # 401, still counted nowhere
        metrics = (await client.get("/metrics")).text
    assert "beacon_api_processed_total" in metrics
    async with api.client() as client:
        openapi = (await client.get("/openapi.json")).json()
    assert "/v1/messages/process" in openapi["paths"]


async def test_status_for_an_unknown_message_keeps_the_furthest_state(api: ApiServer) -> None:
    from beacon.api import store
    from beacon.api.db import make_engine, make_sessionmaker
    from beacon.messages import StatusError
    from tests.conftest import make_settings

    msg = inbound()
    wamid = f"wamid.only.{msg.id}"
    async with api.client() as client:
        for state in ("delivered", "sent", "failed", "read"):
            st = BeaconMessage.status_update(
                channel="whatsapp",
                account=msg.account,
                user_id=msg.user_id,
                channel_message_id=wamid,
                status=state,
                error=StatusError(code=131047, title="Re-engagement message") if state == "failed" else None,
            )
            assert (await process(client, st)).status_code == 200
    engine = make_engine(make_settings(), api.database_url)
    try:
        async with make_sessionmaker(engine)() as session:
            assert await store.delivery_state(session, wamid) == "failed"
    finally:
        await engine.dispose()


async def test_values_too_long_for_the_database_are_422(api: ApiServer) -> None:
    msg = inbound("x").model_copy(update={"id": "i" * 65})
    async with api.client() as client:
        resp = await process(client, msg)
        ok = await process(client, inbound("fine"))
    assert resp.status_code == 422 and "id (65 > 64)" in resp.json()["detail"]
    assert ok.status_code == 200


async def test_a_database_failure_is_a_503_the_worker_retries(
    tmp_path: Path, api_factory: Callable[..., ApiServer]
) -> None:
    from beacon.api import migrate
    from tests.conftest import make_settings

    path = tmp_path / "broken.db"
    url = f"sqlite+aiosqlite:///{path}"
    await migrate.upgrade(make_settings(), url=url)
    server = api_factory(url)
    with sqlite3.connect(path) as db:
        db.execute("DROP TABLE processed")
    async with server.client() as client:
        resp = await process(client, inbound("hello"))
    assert resp.status_code == 503 and "database unavailable, retry" in resp.json()["detail"]


async def test_a_batch_answers_each_message_as_the_single_endpoint_would(api: ApiServer) -> None:
    good = [inbound(f"batch {i}") for i in range(5)]
    too_long = inbound("x").model_copy(update={"profile_name": "n" * 300})
    outbound = good[0].reply_text("not inbound")
    already = inbound("processed before")
    async with api.client() as client:
        single = (await process(client, already)).json()
        batch = [*good, too_long, already, outbound]
        resp = await client.post("/v1/messages/process-batch", json={"messages": [as_json(m) for m in batch]})
        assert resp.status_code == 200, resp.text
        assert resp.headers["content-type"].startswith("application/x-ndjson")
        lines = [json.loads(line) for line in resp.text.splitlines() if line]
        assert sorted(line["index"] for line in lines) == list(range(len(batch)))  # one line per message
        results = sorted(lines, key=lambda line: line["index"])
        again = (await process(client, good[2])).json()
        unauthorised = await api.client(token="wrong").post("/v1/messages/process-batch", json={"messages": []})
    assert len(results) == len(batch)
    for msg, item in zip(good, results[:5], strict=True):
        assert item["status"] == 200
        assert item["result"]["message_id"] == msg.id and item["result"]["duplicate"] is False
        assert [r["text"] for r in item["result"]["replies"]] == [f"You said: {msg.text}"]
    assert results[5]["status"] == 422 and "profile_name (300 > 255)" in results[5]["detail"]
    assert results[6]["status"] == 200 and results[6]["result"]["duplicate"] is True
    assert results[6]["result"]["replies"] == single["replies"]
    assert results[7]["status"] == 422 and "direction 'outbound'" in results[7]["detail"]
    # the single endpoint sees what the batch stored: same replies, same ids
    assert again["duplicate"] is True and again["replies"] == results[2]["result"]["replies"]
    assert unauthorised.status_code == 401

