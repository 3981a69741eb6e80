"""The Cloud API client's sends against raw servers on free ports that misbehave on purpose: a send is never
repeated by the client (a connection lost before the answer is the engine's to judge, as a retryable
CloudApiError), refusals and hangs are CloudApiErrors, and error bodies keep their codes."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import SecretStr

from beacon.gateway.channel import Action
from beacon.gateway.whatsapp.client import CloudApiClient
from beacon.gateway.whatsapp.errors import CloudApiError
from beacon.ops.process import free_port
from tests.conftest import make_settings
from tests.test_http_pool import RawServers, ok

TOKEN = "client-test-token"
BODY = {"messaging_product": "whatsapp", "to": "+447700900123", "type": "text", "text": {"body": "hi"}}


def client_for(port: int, send_timeout: float = 10.0) -> CloudApiClient:
    return CloudApiClient(make_settings(whatsapp_graph_url=f"http://127.0.0.1:{port}",
                                        whatsapp_send_timeout=send_timeout, whatsapp_access_token=SecretStr(TOKEN)))


async def test_a_send_dropped_unanswered_on_a_reused_connection_is_not_repeated_by_the_client() -> None:
    heads: list[bytes] = []

    async def answers_one_per_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for n in range(2):
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length")))
            await reader.readexactly(length)
            heads.append(head)
            if n == 1:  # the second send on a connection: dropped unanswered (the Cloud API may have taken it)
                writer.close()
                return
            writer.write(ok(b'{"messages": [{"id": "wamid.1"}]}', b"Content-Type: application/json\r\n"))
            await writer.drain()

    async with RawServers() as raw_server:
        client = client_for(await raw_server(answers_one_per_connection))
        try:
            async with asyncio.timeout(10):
                answer = await client.send("106540352242922", BODY)
                assert answer["messages"][0]["id"] == "wamid.1"
                with pytest.raises(CloudApiError) as raised:
                    await client.send("106540352242922", BODY)
        finally:
            await client.close()
    assert len(heads) == 2  # the second send went out once, never again on a new connection
    assert heads[0].startswith(b"POST /v23.0/106540352242922/messages HTTP/1.1\r\n")
    assert b"authorization: bearer client-test-token" in heads[0].lower()
    error = raised.value
    assert error.action is Action.RETRY and error.code is None and error.http_status is None
    assert "Cloud API unreachable at" in str(error) and "closed the connection before answering" in str(error)


async def test_a_refused_connection_and_a_hang_are_retryable_cloud_api_errors() -> None:
    refused = client_for(free_port())
    try:
        with pytest.raises(CloudApiError) as raised:
            await refused.send("1", BODY)
    finally:
        await refused.close()
    assert raised.value.action is Action.RETRY and "cannot connect to" in str(raised.value)

    async def hangs(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # until the client goes

    async with RawServers() as raw_server:
        hung = client_for(await raw_server(hangs), send_timeout=0.3)
        try:
            with pytest.raises(CloudApiError) as raised:
                await hung.send("1", BODY)
        finally:
            await hung.close()
    assert raised.value.action is Action.RETRY and "TimeoutError" in str(raised.value)


async def test_error_bodies_keep_their_code_and_status_and_an_odd_number_stays_in_its_path_segment() -> None:
    paths: list[bytes] = []

    async def refuses(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        paths.append(head.split(b" ")[1])
        body = b'{"error": {"message": "Rate limit hit", "type": "OAuthException", "code": 130429}}'
        writer.write(b"HTTP/1.1 429 Too Many Requests\r\nContent-Length: %d\r\n\r\n%b" % (len(body), body))
        await writer.drain()
        await reader.read()

    async with RawServers() as raw_server:
        client = client_for(await raw_server(refuses))
        try:
            with pytest.raises(CloudApiError) as raised:
                await client.send("12 34/../x", BODY)
        finally:
            await client.close()
    assert raised.value.code == 130429 and raised.value.http_status == 429
    assert raised.value.action is Action.SLOW_ACCOUNT
    assert paths == [b"/v23.0/12%2034%2F..%2Fx/messages"]
