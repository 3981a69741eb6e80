"""The Bot API client against the fake over real HTTP: every method, classified errors, bounded
file downloads, and the token never in what it raises; a call is never repeated by the client."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from beacon.fakes.telegram.server import FakeBotApi, running
from beacon.gateway.telegram.client import BotApiClient
from beacon.gateway.telegram.errors import Action, BotApiError, FileTooLargeError
from beacon.gateway.telegram.sends import build_calls
from beacon.messages import BeaconMessage
from beacon.ops.process import free_port
from tests.test_http_pool import RawServers, ok

TOKEN = "123456:AAE-very-secret-token_value"


@pytest.fixture
async def fake() -> AsyncIterator[tuple[FakeBotApi, str]]:
    api = FakeBotApi(token=TOKEN)
    async with running(api) as url:
        yield api, url


async def test_calls_return_results_and_sends_built_from_messages_are_accepted(fake: tuple[FakeBotApi, str]) -> None:
    api, url = fake
    async with BotApiClient(url, TOKEN) as client:
        assert (await client.get_me())["username"] == "beacon_fake_bot"
        reply = BeaconMessage(id="r1", user_key="telegram:123456:42", channel="telegram", account="123456",
                              user_id="42", direction="outbound", kind="text", text="pong",
                              payload='{"buttons": [{"id": "again", "title": "Again"}]}')
        assert await client.send_calls(build_calls(reply)) == "1"
        long_reply = reply.model_copy(update={"text": "a" * 5000, "payload": None})
        assert await client.send_calls(build_calls(long_reply)) == "3"  # two messages, in order
        assert await client.set_webhook("https://example.org/webhooks/telegram", "s3cret")
        info = await client.get_webhook_info()
        assert info["url"] == "https://example.org/webhooks/telegram"
        assert info["allowed_updates"] == ["message", "edited_message", "callback_query"]
        assert await client.delete_webhook() and (await client.get_webhook_info())["url"] == ""
    assert api.state.webhook.secret_token == "s3cret"
    assert [len(c["params"]["text"]) for c in api.calls("sendMessage")] == [4, 4096, 904]
    assert api.calls("sendMessage")[0]["params"]["reply_markup"]["inline_keyboard"][0][0]["callback_data"] == "again"


async def test_errors_are_classified_and_never_show_the_token(fake: tuple[FakeBotApi, str]) -> None:
    _, url = fake
    async with httpx.AsyncClient(base_url=url) as control:
        await control.post("/_fake/fail", json={"error": 429, "chat_id": 7, "count": 1, "retry_after": 2})
        await control.post("/_fake/fail", json={"error": 403, "chat_id": 8, "count": 1})
        await control.post("/_fake/fail", json={"error": 500, "chat_id": 9, "count": 1})
    async with BotApiClient(url, TOKEN) as client:
        seen: list[BotApiError] = []
        for chat in (7, 8, 9):
            with pytest.raises(BotApiError) as err:
                await client.call("sendMessage", {"chat_id": chat, "text": "x"})
            seen.append(err.value)
        with pytest.raises(BotApiError) as bad:
            await client.call("sendMessage", {"chat_id": 1})
        seen.append(bad.value)
        assert [(e.action, e.retry_after, e.opt_out) for e in seen] == [
            (Action.BACKOFF_USER, 2.0, False), (Action.PERMANENT, None, True), (Action.RETRY, None, False),
            (Action.PERMANENT, None, False)]
    async with BotApiClient(url, "123456:wrong-token") as wrong:
        with pytest.raises(BotApiError) as refused:
            await wrong.get_me()
        assert refused.value.action is Action.PAUSE_ACCOUNT
        seen.append(refused.value)
    async with BotApiClient(f"http://127.0.0.1:{free_port()}", TOKEN) as down:
        with pytest.raises(BotApiError) as unreachable:
            await down.call("sendMessage", {"chat_id": 1, "text": "x"})
        assert unreachable.value.action is Action.RETRY and unreachable.value.__cause__ is None
        seen.append(unreachable.value)
    for error in seen:
        assert "AAE-very-secret" not in str(error) and "AAE-very-secret" not in repr(error)


async def test_get_file_downloads_within_the_bound_and_refuses_larger(fake: tuple[FakeBotApi, str]) -> None:
    api, url = fake
    small = api.add_file(b"voice-note-bytes", "voice.ogg")
    big = api.add_file(b"x" * 5000, "big.bin")
    async with BotApiClient(url, TOKEN) as client:
        assert await client.get_file(small, max_bytes=1024) == b"voice-note-bytes"
        with pytest.raises(FileTooLargeError, match="5000 bytes"):
            await client.get_file(big, max_bytes=1024)
        api.hide_file_sizes = True  # the size is learnt while reading: the download stops at the bound
        with pytest.raises(FileTooLargeError, match="stopped reading"):
            await client.get_file(big, max_bytes=1024)
        with pytest.raises(BotApiError) as missing:
            await client.get_file("no-such-file", max_bytes=1024)
        assert missing.value.action is Action.PERMANENT and "AAE-very-secret" not in str(missing.value)


async def test_a_call_dropped_unanswered_on_a_reused_connection_is_not_repeated_and_shows_no_token() -> None:
    heads: list[bytes] = []

    async def answers_one_per_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for n in range(2):
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length")))
            await reader.readexactly(length)
            heads.append(head.split(b" ")[1])
            if n == 1:  # the second call on a connection: dropped unanswered (Telegram may have sent the message)
                writer.close()
                return
            writer.write(ok(b'{"ok": true, "result": {"message_id": 5}}'))
            await writer.drain()

    async with RawServers() as raw_server, \
            BotApiClient(f"http://127.0.0.1:{await raw_server(answers_one_per_connection)}", TOKEN) as client:
        assert (await client.call("sendMessage", {"chat_id": 1, "text": "a"}))["message_id"] == 5
        with pytest.raises(BotApiError) as raised:
            await client.call("sendMessage", {"chat_id": 1, "text": "b"})
    assert heads == [f"/bot{TOKEN}/sendMessage".encode()] * 2  # the second call went out once, never again
    assert raised.value.action is Action.RETRY and raised.value.__cause__ is None
    assert "closed the connection before answering" in str(raised.value) and "AAE-very-secret" not in str(raised.value)
