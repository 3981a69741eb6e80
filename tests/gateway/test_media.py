"""Media for the pipeline over real HTTP: a handler's ``turn.media_bytes()`` in the API asks the channel's
gateway (``GET /media/{account}/{media id}``, service token), which fetches from the fake Cloud API (media
id -> URL -> bytes with the number's token) or the fake Bot API (``getFile`` -> download), bounded in size
and cached on disk. The gateway's media route is the one ``beacon gateway <channel>`` serves."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web
from pydantic import SecretStr

from beacon.config import Settings
from beacon.fakes.telegram.server import DEV_TOKEN, FakeBotApi
from beacon.fakes.telegram.server import running as running_telegram
from beacon.fakes.whatsapp.server import FakeCloudApi
from beacon.gateway.media import MediaService
from beacon.gateway.service import Gateway
from beacon.gateway.telegram.channel import TelegramChannel
from beacon.gateway.whatsapp.channel import WhatsAppChannel
from beacon.messages import Media
from beacon.ops.process import free_port
from beacon.testing import TOKEN, BotTester
from tests.gateway.conftest import serve

PIPELINE = "tests.gateway.media_bot:bot"
NUMBER = "106540352242922"
BOT = DEV_TOKEN.partition(":")[0]
LIMIT = 64 * 1024


def answer_for(data: bytes) -> str:
    return f"{len(data)} bytes, sha256 {hashlib.sha256(data).hexdigest()}"


def gateway_settings(tmp_path: Path, **values: Any) -> Settings:
    return Settings(_env_file=None, data_dir=tmp_path / "gateway", api_token=SecretStr(TOKEN),
                    media_max_bytes=LIMIT, **values)


@dataclass
class Stack:
    """A bot in the API, a channel's media route on a real port, the channel's fake behind it."""

    bot: BotTester
    gateway_url: str

    async def read(self, media_id: str, kind: str = "image") -> str:
        msg = self.bot.message("u1", kind=kind, text=None, media=Media(id=media_id, mime_type="image/jpeg"))
        replies = await self.bot.send(msg)
        assert len(replies) == 1 and replies[0].text is not None
        return replies[0].text

    async def get(self, account: str, media_id: str, token: str | None = TOKEN) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with httpx.AsyncClient() as http:
            return await http.get(f"{self.gateway_url}/media/{account}/{media_id}", headers=headers)


@asynccontextmanager
async def media_stack(settings: Settings, source: WhatsAppChannel | TelegramChannel, bot_dir: Path, channel: str,
                      account: str) -> AsyncIterator[Stack]:
    """The channel's media route (as ``Gateway`` mounts it) on a free port, and a bot whose API reaches it."""
    app = web.Application()
    app.add_routes(MediaService(settings, source).routes())
    try:
        async with serve(app) as url, BotTester(PIPELINE, bot_dir, gateway_urls={channel: url}) as bot:
            bot.channel, bot.account = channel, account
            yield Stack(bot, url)
    finally:
        await source.close()


@pytest.fixture
async def whatsapp(fake_whatsapp: tuple[FakeCloudApi, str],
                   tmp_path: Path) -> AsyncIterator[tuple[Stack, FakeCloudApi]]:
    fake, fake_url = fake_whatsapp
    settings = gateway_settings(tmp_path, whatsapp_graph_url=fake_url,
                                whatsapp_access_token=SecretStr("dev-access-token"))
    async with media_stack(settings, WhatsAppChannel(settings), tmp_path / "api", "whatsapp", NUMBER) as stack:
        yield stack, fake


@pytest.fixture
async def telegram(tmp_path: Path) -> AsyncIterator[tuple[Stack, FakeBotApi]]:
    fake = FakeBotApi(token=DEV_TOKEN)
    async with running_telegram(fake) as fake_url:
        settings = gateway_settings(tmp_path, telegram_bot_token=SecretStr(DEV_TOKEN), telegram_api_url=fake_url)
        async with media_stack(settings, TelegramChannel(settings), tmp_path / "api", "telegram", BOT) as stack:
            yield stack, fake


async def test_a_handler_reads_a_whatsapp_image_and_a_second_read_comes_from_the_gateways_cache(
        whatsapp: tuple[Stack, FakeCloudApi]) -> None:
    stack, fake = whatsapp
    image = os.urandom(20_000)
    media_id = fake.add_media(image, "image/jpeg")
    assert await stack.read(media_id) == answer_for(image)
    assert (fake.state.media_lookups, fake.state.media_downloads) == (1, 1)
    assert await stack.read(media_id) == answer_for(image)  # another message with the same media
    direct = await stack.get(NUMBER, media_id)
    assert direct.status_code == 200 and direct.content == image
    assert direct.headers["Content-Type"] == "image/jpeg"
    assert (fake.state.media_lookups, fake.state.media_downloads) == (1, 1)  # the Cloud API was asked once


async def test_whatsapp_media_beyond_the_bound_unknown_or_without_the_token_is_refused(
        whatsapp: tuple[Stack, FakeCloudApi]) -> None:
    stack, fake = whatsapp
    big = fake.add_media(os.urandom(LIMIT + 1), "video/mp4")
    answer = await stack.read(big, kind="video")
    assert answer.startswith("unavailable:") and "larger than the gateway's BEACON_MEDIA_MAX_BYTES" in answer
    assert (await stack.get(NUMBER, big)).status_code == 413
    assert fake.state.media_downloads == 0  # the URL's answer told the size: nothing downloaded

    answer = await stack.read("9999999999")
    assert answer.startswith("unavailable:") and "does not know this media" in answer
    assert (await stack.get(NUMBER, "9999999999")).status_code == 404

    lookups = fake.state.media_lookups
    assert (await stack.get(NUMBER, "..%2F" + NUMBER + "%2Fmessages")).status_code == 404  # never a Graph URL
    assert fake.state.media_lookups == lookups
    small = fake.add_media(b"secret photo", "image/jpeg")
    assert (await stack.get(NUMBER, small, token=None)).status_code == 401
    assert (await stack.get(NUMBER, small, token="not-the-token")).status_code == 401
    assert fake.state.media_lookups == lookups  # refused before asking the channel


async def test_a_handler_reads_a_telegram_photo_once_from_the_bot_api(telegram: tuple[Stack, FakeBotApi]) -> None:
    stack, fake = telegram
    photo = os.urandom(30_000)
    file_id = fake.add_file(photo, "photo.jpg")
    assert await stack.read(file_id) == answer_for(photo)
    assert await stack.read(file_id) == answer_for(photo)
    direct = await stack.get(BOT, file_id)
    assert direct.content == photo and direct.headers["Content-Type"] == "image/jpeg"
    assert len(fake.calls("getFile")) == 1


async def test_telegram_files_are_read_no_further_than_the_bound_and_unknown_ones_are_unavailable(
        telegram: tuple[Stack, FakeBotApi]) -> None:
    stack, fake = telegram
    fake.hide_file_sizes = True  # getFile may omit file_size: the download itself must stop at the bound
    big = fake.add_file(os.urandom(LIMIT + 1), "voice.ogg")
    answer = await stack.read(big, kind="audio")
    assert answer.startswith("unavailable:") and "BEACON_MEDIA_MAX_BYTES" in answer
    assert (await stack.get(BOT, big)).status_code == 413
    answer = await stack.read("no-such-file-id")
    assert answer.startswith("unavailable:") and "does not know this media" in answer
    assert (await stack.get("42", "any")).status_code == 404  # another bot's file


async def test_a_gateway_that_is_down_makes_the_media_unavailable_not_the_turn_fail(tmp_path: Path) -> None:
    down = f"http://127.0.0.1:{free_port()}"
    async with BotTester(PIPELINE, tmp_path, gateway_urls={"whatsapp": down}, media_timeout=5.0) as bot:
        replies = await bot.send(bot.message("u1", kind="image", text=None, media=Media(id="123")))
    assert replies[0].text is not None and replies[0].text.startswith("unavailable:")
    assert f"the whatsapp gateway at {down} cannot be reached" in replies[0].text


@pytest.mark.parametrize("channel", ["whatsapp", "telegram"])
async def test_the_channels_gateway_serves_media_on_its_port(channel: str, registry_settings: Settings,
                                                             fake_whatsapp: tuple[FakeCloudApi, str],
                                                             new_topic: Callable[..., str],
                                                             unique: Callable[[str], str], tmp_path: Path) -> None:
    wa_fake, wa_url = fake_whatsapp
    tg_fake = FakeBotApi(token=DEV_TOKEN)
    port = free_port()
    voice = os.urandom(5_000)
    async with running_telegram(tg_fake) as tg_url:
        settings = registry_settings.replace(
            topic_in=new_topic(1, "bm_in"),
            topic_out=new_topic(1, "bm_out"),
            topic_dlq=new_topic(1, "dlq"),
            whatsapp_graph_url=wa_url,
            whatsapp_access_token=SecretStr("dev-access-token"),
            whatsapp_app_secret=SecretStr("dev-secret"),
            whatsapp_gateway_port=port,
            whatsapp_gateway_group=unique("wa"),
            whatsapp_sent_store=tmp_path / "wa-sent.db",
            telegram_bot_token=SecretStr(DEV_TOKEN),
            telegram_api_url=tg_url,
            telegram_port=port,
            telegram_webhook_secret=SecretStr("tg-secret"),
            telegram_gateway_group=unique("tg"),
            telegram_sent_store=tmp_path / "tg-sent.db",
            api_token=SecretStr(TOKEN),
            data_dir=tmp_path / "gateway",
        )
        if channel == "whatsapp":
            gateway = Gateway(settings, WhatsAppChannel(settings))
            media_id, account = wa_fake.add_media(voice, "audio/ogg; codecs=opus"), NUMBER
        else:
            gateway = Gateway(settings, TelegramChannel(settings))
            media_id, account = tg_fake.add_file(voice, "voice.ogg"), BOT
        task = asyncio.create_task(gateway.serve())
        url = f"http://127.0.0.1:{port}"
        try:
            async with httpx.AsyncClient(timeout=30) as http:
                deadline = time.monotonic() + 30
                while True:
                    assert not task.done(), "the gateway stopped during start-up"
                    try:
                        if (await http.get(f"{url}/healthz")).status_code == 200:
                            break
                    except httpx.HTTPError:
                        pass
                    assert time.monotonic() < deadline, "the gateway did not listen"
                    await asyncio.sleep(0.1)
            async with BotTester(PIPELINE, tmp_path / "api", gateway_urls={channel: url}) as bot:
                bot.channel, bot.account = channel, account
                replies = await bot.send(bot.message("u1", kind="audio", text=None, media=Media(id=media_id)))
            assert replies[0].text == answer_for(voice)
        finally:
            gateway.stop()
            await asyncio.wait_for(task, 60)


async def test_concurrent_reads_of_one_media_fetch_it_once(whatsapp: tuple[Stack, FakeCloudApi]) -> None:
    stack, fake = whatsapp
    video = os.urandom(50_000)
    media_id = fake.add_media(video, "video/mp4")
    answers = await asyncio.gather(*(stack.get(NUMBER, media_id) for _ in range(5)))
    assert all(a.status_code == 200 and a.content == video for a in answers)
    assert (fake.state.media_lookups, fake.state.media_downloads) == (1, 1)


async def test_a_whatsapp_media_url_that_expired_is_asked_for_again(whatsapp: tuple[Stack, FakeCloudApi]) -> None:
    stack, fake = whatsapp
    note = os.urandom(4_000)
    media_id = fake.add_media(note, "audio/ogg")
    fake.state.expire_media_urls = 1  # the first URL is past its 5 minutes when downloaded
    assert await stack.read(media_id, kind="audio") == answer_for(note)
    assert (fake.state.media_lookups, fake.state.media_downloads) == (2, 2)


async def test_the_api_reads_no_more_than_the_bound_whatever_answers_at_the_gateway_url(tmp_path: Path) -> None:
    async def endless(_request: web.Request) -> web.Response:  # not a Beacon gateway: ignores the bound
        return web.Response(body=os.urandom(LIMIT + 1), content_type="image/jpeg")

    app = web.Application()
    app.router.add_get("/media/{account}/{media_id}", endless)
    async with serve(app) as url, BotTester(PIPELINE, tmp_path, gateway_urls={"whatsapp": url},
                                             media_max_bytes=LIMIT) as bot:
        replies = await bot.send(bot.message("u1", kind="image", text=None, media=Media(id="123")))
    assert replies[0].text is not None and replies[0].text.startswith("unavailable:")
    assert f"more than the {LIMIT} allowed" in replies[0].text
