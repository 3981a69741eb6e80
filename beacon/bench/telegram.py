"""``beacon bench gateway --channel telegram``: the Telegram gateway measured like WhatsApp's (see
:func:`beacon.bench.gateway.measure`): Updates with the secret header POSTed/s and accepted, p50/p99 time
to the 200 at a paced rate, vs raw produce+ack; sendMessage calls/s from bm_out to the fake Bot API (in a
process of its own) with the limiters off, vs raw HTTP calls from the bench to the fake.
"""

from __future__ import annotations

import uuid
from typing import Any

import orjson

from beacon.bench.gateway import Channel
from beacon.fakes.telegram import updates as u
from beacon.fakes.telegram.server import DEV_TOKEN
from beacon.gateway.telegram.auth import HEADER
from beacon.messages import BeaconMessage

SECRET = "bench-telegram-secret"
BOT = DEV_TOKEN.partition(":")[0]


def _bodies(count: int, users: int) -> list[tuple[bytes, str]]:
    return [(orjson.dumps(u.text_update(10_000 + i, 500_000 + i % users, i + 1, f"bench message {i} café")), SECRET)
            for i in range(count)]


def _gateway_env(port: int, fake_url: str) -> dict[str, str]:
    return {"BEACON_TELEGRAM_GATEWAY_GROUP": f"bench-tg-{uuid.uuid4().hex[:8]}", "BEACON_TELEGRAM_PORT": str(port),
            "BEACON_TELEGRAM_HOST": "127.0.0.1", "BEACON_TELEGRAM_API_URL": fake_url,
            "BEACON_TELEGRAM_BOT_TOKEN": DEV_TOKEN, "BEACON_TELEGRAM_WEBHOOK_SECRET": SECRET,
            "BEACON_TELEGRAM_RATE_LIMIT": "0", "BEACON_TELEGRAM_CHAT_RATE": "0"}


def _fake_env(gateway_port: int) -> dict[str, str]:
    # The bench posts the Updates itself; the fake only answers the gateway's Bot API calls.
    return {"BEACON_TELEGRAM_BOT_TOKEN": DEV_TOKEN, "BEACON_TELEGRAM_WEBHOOK_SECRET": SECRET,
            "BEACON_TELEGRAM_PORT": str(gateway_port)}


def _raw_send(fake_url: str) -> tuple[str, dict[str, Any], dict[str, str]]:
    return f"{fake_url}/bot{DEV_TOKEN}/sendMessage", {"chat_id": 500_000, "text": "hi"}, {}


def _replies(count: int, users: int) -> list[BeaconMessage]:
    return [BeaconMessage.inbound_text(channel="telegram", account=BOT, user_id=str(600_000 + i % users), text="x",
                                       channel_message_id=f"bench-{uuid.uuid4().hex}").reply_text(f"reply {i}")
            for i in range(count)]


TELEGRAM = Channel(name="telegram", webhook_path="/webhooks/telegram", header=HEADER, bodies=_bodies,
                   gateway_env=_gateway_env, fake_env=_fake_env, raw_send=_raw_send, replies=_replies,
                   record_path="/_fake/calls", record_params={"method": "sendMessage"}, record_stamp="at",
                   api="Bot API")
