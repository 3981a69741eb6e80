"""``beacon telegram set-webhook / info`` and ``beacon fake-telegram say`` as an operator runs them,
against the fake Bot API over real HTTP (the bot's side played by a small webhook in the test)."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from aiohttp import web

from beacon.fakes.telegram.server import FakeBotApi, running
from beacon.gateway.telegram.auth import WebhookAuthError, check_secret
from beacon.gateway.telegram.client import BotApiClient
from beacon.gateway.telegram.parse import parse_update
from beacon.gateway.telegram.sends import build_calls
from beacon.ops.process import free_port

TOKEN = "123456:cli-test-token"
SECRET = "cli-secret"


async def beacon(tmp_path: Path, api_url: str, *args: str) -> tuple[int, str, str]:
    env = {"PATH": "/usr/bin:/bin", "BEACON_TELEGRAM_BOT_TOKEN": TOKEN, "BEACON_TELEGRAM_API_URL": api_url,
           "BEACON_TELEGRAM_WEBHOOK_SECRET": SECRET, "BEACON_DATA_DIR": str(tmp_path), "COLUMNS": "200"}
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "beacon", *args, cwd=tmp_path, env=env,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@asynccontextmanager
async def echo_bot(api_url: str, *, reply: bool = True) -> AsyncIterator[str]:
    """A webhook that checks the secret, parses the Update and (if ``reply``) answers ``You said: <text>``."""

    async def handle(request: web.Request) -> web.Response:
        try:
            check_secret(request.headers.get("X-Telegram-Bot-Api-Secret-Token"), SECRET)
        except WebhookAuthError as exc:
            return web.Response(status=exc.status)
        parsed = parse_update(await request.read(), "123456")
        if reply:
            async with BotApiClient(api_url, TOKEN) as client:
                for msg in parsed.messages:
                    for call in build_calls(msg.reply_text(f"You said: {msg.text}")):
                        await client.call(call.method, call.params)
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/webhooks/telegram", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/webhooks/telegram"
    finally:
        await runner.cleanup()


@pytest.mark.slow
async def test_set_webhook_then_info_then_say_prints_the_reply(tmp_path: Path) -> None:
    fake = FakeBotApi(token=TOKEN, retry_delay=0.01, max_attempts=2)
    async with running(fake) as api_url, echo_bot(api_url) as hook_url:
        code, out, err = await beacon(tmp_path, api_url, "telegram", "set-webhook", hook_url)
        assert code == 0, err
        assert f"webhook set to {hook_url}" in out and fake.state.webhook.secret_token == SECRET
        assert fake.state.webhook.allowed_updates == ["message", "edited_message", "callback_query"]
        code, out, err = await beacon(tmp_path, api_url, "fake-telegram", "say", "--chat", "42", "hello",
                                      "--url", api_url, "--timeout", "20")
        assert code == 0, err
        assert out.strip() == "You said: hello"
        code, out, err = await beacon(tmp_path, api_url, "telegram", "info")
        assert code == 0, err
        assert f"url: {hook_url}" in out and "pending_update_count: 0" in out and "last_error: none" in out


@pytest.mark.slow
async def test_say_exits_1_saying_why_when_refused_or_unanswered(tmp_path: Path) -> None:
    fake = FakeBotApi(token=TOKEN, retry_delay=0.01, max_attempts=2)
    async with running(fake) as api_url, echo_bot(api_url, reply=False) as hook_url:
        fake.state.webhook.url, fake.state.webhook.secret_token = hook_url, "not-the-secret"
        code, _, err = await beacon(tmp_path, api_url, "fake-telegram", "say", "--chat", "42", "hi", "--url", api_url)
        assert code == 1 and "did not accept the update (answer: 403)" in err
        code, out, err = await beacon(tmp_path, api_url, "telegram", "info")
        assert "last_error_message: Wrong response from the webhook: 403 Forbidden" in out
        fake.state.webhook.secret_token = SECRET
        code, _, err = await beacon(tmp_path, api_url, "fake-telegram", "say", "--chat", "42", "hi", "--url", api_url,
                                    "--timeout", "1")
        assert code == 1 and "no reply to chat 42 within 1s" in err
        # the update was accepted: the fake's log shows it was delivered, and no send came back
        assert [a.status for a in fake.delivery.attempts][-1] == 200 and fake.calls("sendMessage") == []


async def test_commands_fail_clearly_without_a_token_or_an_api(tmp_path: Path) -> None:
    code, _, err = await beacon(tmp_path, "http://127.0.0.1:9", "telegram", "info")
    assert code == 1 and "Bot API unreachable at http://127.0.0.1:9 (getWebhookInfo)" in err
    assert "cli-test-token" not in err


@pytest.mark.slow
async def test_fake_telegram_serves_on_its_port_until_stopped(tmp_path: Path) -> None:
    port = free_port()
    env = {"PATH": "/usr/bin:/bin", "BEACON_TELEGRAM_BOT_TOKEN": TOKEN, "BEACON_FAKE_TELEGRAM_PORT": str(port),
           "BEACON_DATA_DIR": str(tmp_path)}
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "beacon", "fake-telegram", cwd=tmp_path,
                                                env=env, stdout=asyncio.subprocess.PIPE)
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
        assert f"fake Bot API at http://127.0.0.1:{port} (bot 123456)" in line
        async with BotApiClient(f"http://127.0.0.1:{port}", TOKEN) as client:
            assert (await client.get_me())["id"] == 123456
            assert (await client.get_webhook_info())["url"] == "http://127.0.0.1:8082/webhooks/telegram"
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 30)
