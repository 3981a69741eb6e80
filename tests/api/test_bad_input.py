"""Input a probe found mishandled: values the topics or database cannot carry are 422 (not 500),
a batch answers every item and finishes its stream, the token is checked before the body is read,
and bodies over the limit are refused before they are read."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx

from beacon.messages import BeaconMessage, StatusError
from tests.api.conftest import TOKEN, ApiServer, as_json, inbound, process


def failed_status(code: int) -> BeaconMessage:
    msg = inbound()
    return BeaconMessage.status_update(
        channel="whatsapp",
        account=msg.account,
        user_id=msg.user_id,
        channel_message_id=f"wamid.{msg.id}",
        status="failed",
        error=StatusError(code=code, title="x"),
    )


def raw_body(msg: BeaconMessage, text: str) -> bytes:
    """The message's JSON with ``text`` written as JSON escapes (a lone surrogate survives that way)."""
    body = as_json(msg)
    body["text"] = "@@TEXT@@"
    return json.dumps(body).replace('"@@TEXT@@"', json.dumps(text, ensure_ascii=True)).encode()


async def test_values_the_wire_cannot_carry_are_422(api: ApiServer) -> None:
    surrogate = inbound("x")
    nul = inbound("before\x00after")
    async with api.client() as client:
        too_big = await process(client, failed_status(2**31))
        fine = await process(client, failed_status(2**31 - 1))
        lone = await client.post(
            "/v1/messages/process",
            content=raw_body(surrogate, "half an emoji \ud83d here"),
            headers={"Idempotency-Key": surrogate.id, "Content-Type": "application/json"},
        )
        with_nul = await process(client, nul)
        assert (await client.get(f"/v1/users/{surrogate.user_key}")).status_code == 404  # nothing stored
    assert too_big.status_code == 422 and "error.code" in too_big.text, too_big.text
    assert fine.status_code == 200
    assert lone.status_code == 422 and "lone surrogate" in lone.json()["detail"], lone.text
    assert with_nul.status_code == 422 and "NUL" in with_nul.json()["detail"], with_nul.text


async def test_a_batch_answers_every_item_and_finishes_its_stream(api: ApiServer) -> None:
    good = [inbound(f"good {i}") for i in range(3)]
    surrogate = inbound("x")
    items = [
        json.dumps(as_json(good[0])),
        raw_body(surrogate, "broken \udc00 text").decode(),
        json.dumps(as_json(failed_status(2**40))),
        json.dumps(as_json(good[1])),
        json.dumps(as_json(good[2])),
        json.dumps({**as_json(inbound("no user key")), "user_key": None}),
    ]
    body = ('{"messages":[' + ",".join(items) + "]}").encode()
    async with api.client() as client:
        resp = await client.post(
            "/v1/messages/process-batch", content=body, headers={"Content-Type": "application/json"}
        )
    assert resp.status_code == 200, resp.text
    lines = sorted((json.loads(line) for line in resp.text.splitlines() if line), key=lambda item: item["index"])
    assert [line["index"] for line in lines] == [0, 1, 2, 3, 4, 5]
    assert [line["status"] for line in lines] == [200, 422, 422, 200, 200, 422]
    assert "lone surrogate" in lines[1]["detail"] and "error.code" in lines[2]["detail"]
    assert "item 5 is not a BeaconMessage or MessageGroup: user_key" in lines[5]["detail"]
    assert [lines[i]["result"]["replies"][0]["text"] for i in (0, 3, 4)] == [f"You said: good {i}" for i in range(3)]


async def test_the_token_is_checked_before_the_body_is_read(api: ApiServer) -> None:
    async with api.client(token=None) as client:
        for path in ("/v1/messages/process", "/v1/messages/process-batch", "/v1/messages/send"):
            resp = await client.post(path, content=b"{not json", headers={"Content-Type": "application/json"})
            assert resp.status_code == 401, (path, resp.text)
            assert resp.headers["www-authenticate"] == "Bearer"
            assert "BEACON_API_TOKEN" in resp.json()["detail"]


async def test_bodies_over_the_limit_are_413(migrated_url: str, api_factory: Callable[..., ApiServer]) -> None:
    server = api_factory(migrated_url, BEACON_API_MAX_BODY_BYTES="4096")
    big = inbound("x" * 5000)
    data = json.dumps(as_json(big)).encode()

    async with server.client() as client:
        declared = await process(client, big)
        small = await process(client, inbound("small"))
        assert (await client.get(f"/v1/users/{big.user_key}")).status_code == 404
    with httpx.Client(base_url=server.base_url, headers={"Authorization": f"Bearer {TOKEN}"}) as sync:
        # No Content-Length (chunked): refused once the bytes read pass the limit.
        streamed = sync.post(
            "/v1/messages/process",
            content=(data[start : start + 1000] for start in range(0, len(data), 1000)),
            headers={"Content-Type": "application/json"},
        )
    assert declared.status_code == 413 and "BEACON_API_MAX_BODY_BYTES" in declared.json()["detail"]
    assert streamed.status_code == 413, streamed.text
    assert small.status_code == 200
