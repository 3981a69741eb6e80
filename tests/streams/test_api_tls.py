"""An https API whose certificate a private authority signed: workers, gateways and the console trust the
authorities in BEACON_API_CA_FILE (real TLS over real sockets), and without it they refuse the certificate."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from beacon.config import Settings
from beacon.console import overview
from beacon.console.conversations import ApiUnavailableError, _get
from beacon.fakes.beacon_api import make_stub_app
from beacon.gateway.optout import mark_opted_out
from beacon.messages import BeaconMessage
from beacon.ops import kafka_tls
from beacon.ops.process import free_port
from beacon.streams.client import ApiClient, ApiError
from tests.conftest import make_settings

TOKEN = "tls-token"


@pytest.fixture
async def https_api(tmp_path: Path) -> AsyncIterator[tuple[str, Path, list[str]]]:
    """The stub API over https with a certificate for 127.0.0.1 from a private authority; its CA file, and the
    users marked opted out."""
    authority = make_settings(data_dir=tmp_path)
    server_ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ssl.load_cert_chain(kafka_tls.ensure_certificates(authority))
    opted_out: list[str] = []

    async def opt_out(request: web.Request) -> web.Response:
        opted_out.append(request.match_info["key"])
        return web.json_response({"opted_out": True})

    async def users(_: web.Request) -> web.Response:
        return web.json_response([])

    app = make_stub_app(TOKEN)
    app.router.add_put("/v1/users/{key}/opt-out", opt_out)
    app.router.add_get("/v1/users", users)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=server_ssl).start()
    try:
        yield f"https://127.0.0.1:{port}", kafka_tls.ca_file(authority), opted_out
    finally:
        await runner.cleanup()


def settings_for(url: str, ca_file: Path | None) -> Settings:
    return make_settings(api_url=url, api_token=TOKEN, api_ca_file=ca_file)


async def test_every_client_of_the_api_trusts_the_authorities_of_the_ca_file(
    https_api: tuple[str, Path, list[str]],
) -> None:
    url, ca_file, opted_out = https_api
    settings = settings_for(url, ca_file)
    msg = BeaconMessage.inbound_text(channel="whatsapp", account="1", user_id="447700900001", text="over tls",
                                     channel_message_id="wamid.tls")
    client = ApiClient(settings)
    try:
        async with asyncio.timeout(20):
            replies = await client.process(msg)
            assert [r.text for r in replies] == ["You said: over tls"]
            assert await client.readiness() is None
    finally:
        await client.close()
    assert await mark_opted_out(settings, "whatsapp:447700900001", "blocked the bot")
    assert opted_out == ["whatsapp:447700900001"]
    assert (await asyncio.to_thread(_get, settings, "/v1/users")).json() == []
    checks, _ = await asyncio.to_thread(overview.health, settings.replace(data_dir=settings.data_dir / "none"))
    assert [(c.name, c.healthy) for c in checks if c.name == "api"] == [("api", True)]


async def test_without_the_ca_file_the_certificate_is_refused(https_api: tuple[str, Path, list[str]]) -> None:
    url, _, opted_out = https_api
    settings = settings_for(url, None)
    msg = BeaconMessage.inbound_text(channel="whatsapp", account="1", user_id="447700900002", text="over tls",
                                     channel_message_id="wamid.tls2")
    client = ApiClient(settings)
    try:
        with pytest.raises(ApiError) as raised:
            async with asyncio.timeout(20):
                await client.process_one(msg)
    finally:
        await client.close()
    assert raised.value.unreachable and "certificate verify failed" in str(raised.value)
    with pytest.raises(ApiUnavailableError, match="certificate verify failed"):
        await asyncio.to_thread(_get, settings, "/v1/users")
    assert opted_out == []
