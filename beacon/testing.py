"""Test a bot without the stack: ``BotTester`` runs messages through the real API app (its
pipeline, writer and migrations) in this process, on SQLite in a directory of your choice.

    async def test_start(tmp_path: Path) -> None:
        async with BotTester("commands,orderbot.handlers:bot,fallback", tmp_path) as bot:
            assert (await bot.say("/start"))[0].text.startswith("Hi")

``StackChat`` drives the whole running ``beacon dev`` stack through its fake Cloud API instead
(integration tests: ``assert StackChat().say("/ping")[0].text == "pong"``).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import orjson
from fastapi import FastAPI
from sqlalchemy import select

from beacon.api.models import OutboxEvent, UserState
from beacon.bot.delivery import OutboxDelivery
from beacon.config import Settings
from beacon.messages import BeaconMessage, InteractiveReply, make_user_key

TOKEN = "beacon-testing-token"


class BotTester:
    """One API app with ``pipeline`` on a fresh SQLite database in ``data_dir``; messages go over
    the app's real HTTP interface (in process). Outbox events are recorded, not delivered, unless
    ``outbox_callback`` or ``outbox_url`` is given in ``settings``."""

    def __init__(self, pipeline: str | Sequence[str], data_dir: Path, **settings: Any) -> None:
        self.settings = Settings(
            _env_file=None,
            data_dir=data_dir,
            database_url=f"sqlite+aiosqlite:///{data_dir / 'bot.db'}",
            api_pipeline=pipeline if isinstance(pipeline, str) else tuple(pipeline),
            api_token=TOKEN,
            db_auto_migrate=True,
            **settings,
        )
        self.channel, self.account = "whatsapp", "100"
        self._app: FastAPI | None = None
        self._client: httpx.AsyncClient | None = None
        self._lifespan: Any = None

    async def __aenter__(self) -> BotTester:
        from beacon.api.app import create_app

        self._app = create_app(self.settings)
        self._lifespan = self._app.router.lifespan_context(self._app)
        await self._lifespan.__aenter__()
        self._client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self._app), base_url="http://api",
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
        return self

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        if self._client is not None:
            await self._client.aclose()
        if self._lifespan is not None:
            await self._lifespan.__aexit__(kind, exc, tb)

    def message(self, user: str = "u1", **fields: Any) -> BeaconMessage:
        """A new inbound message of ``user`` (text by default) with the given fields."""
        cmid = f"test.{uuid.uuid4().hex}"
        values: dict[str, Any] = {"kind": "text", "profile_name": user.title(), **fields}
        return BeaconMessage.inbound_text(channel=self.channel, account=self.account, user_id=user, text="",
                                          channel_message_id=cmid).model_copy(update=values)

    async def say(self, text: str, user: str = "u1") -> list[BeaconMessage]:
        """``user`` writes ``text``; the replies."""
        return await self.send(self.message(user, text=text))

    async def press(self, button_id: str, user: str = "u1", title: str | None = None) -> list[BeaconMessage]:
        """``user`` taps the button (or list row) ``button_id``; the replies."""
        reply = InteractiveReply(type="button_reply", id=button_id, title=title or button_id)
        return await self.send(self.message(user, kind="interactive", text=None, interactive_reply=reply))

    async def send(self, msg: BeaconMessage) -> list[BeaconMessage]:
        """Process ``msg`` exactly as a worker does (send it twice to see a rerun); the replies."""
        assert self._client is not None, "use BotTester in `async with`"
        resp = await self._client.post("/v1/messages/process", json=msg.model_dump(mode="json"),
                                       headers={"Idempotency-Key": msg.id})
        if resp.status_code != 200:
            raise AssertionError(f"the API answered {resp.status_code} to message {msg.id}: {resp.text}")
        return [BeaconMessage.model_validate(r) for r in resp.json()["replies"]]

    async def state(self, user: str = "u1") -> dict[str, Any]:
        """``user``'s stored bot state (``{}`` when none)."""
        async with self._engine().connect() as conn:
            data = await conn.scalar(select(UserState.data).where(UserState.user_key == self._key(user)))
        loaded = orjson.loads(data) if data else {}
        return loaded if isinstance(loaded, dict) else {}

    async def outbox(self, user: str | None = None) -> list[tuple[str, dict[str, Any]]]:
        """Stored outbox events (kind, data), oldest first, of ``user`` or everyone."""
        stmt = select(OutboxEvent.kind, OutboxEvent.payload).order_by(OutboxEvent.created_at, OutboxEvent.id)
        if user is not None:
            stmt = stmt.where(OutboxEvent.user_key == self._key(user))
        async with self._engine().connect() as conn:
            return [(row.kind, orjson.loads(row.payload)) for row in await conn.execute(stmt)]

    def outbox_delivery(self) -> OutboxDelivery:
        """The running outbox delivery (only with ``outbox_callback`` or ``outbox_url`` set)."""
        assert self._app is not None, "use BotTester in `async with`"
        delivery = self._app.state.beacon.outbox
        assert isinstance(delivery, OutboxDelivery), "no outbox receiver configured"
        return delivery

    def _key(self, user: str) -> str:
        return make_user_key(self.channel, self.account, user)

    def _engine(self) -> Any:
        assert self._app is not None, "use BotTester in `async with`"
        return self._app.state.beacon.engine


class StackChat:
    """A user talking to the running ``beacon dev`` stack through its fake Cloud API, for
    integration tests: one line per exchange, the whole path (gateway, Kafka, workers, API).

        chat = StackChat(user="447700900123")
        assert chat.say("/ping")[0].text == "pong"

    The stack is found by its card (``BEACON_DATA_DIR/dev-stack.json``, ``beacon.ops.stackfile``).
    ``say`` answers the replies the API stored for the message, once the fake Cloud API has
    received that many sends for the user, so an exchange is complete when it returns."""

    def __init__(self, settings: Settings | None = None, *, user: str = "447700900123", name: str | None = None,
                 timeout: float = 60.0) -> None:
        from beacon.ops import stackfile

        self.settings = settings or Settings()
        card = stackfile.read(self.settings)
        if card is None or card.fake_url is None or "api" not in card.health_urls:
            raise RuntimeError(f"no running `beacon dev` stack with the fake Cloud API found in "
                               f"{stackfile.path(self.settings)}: start `beacon dev` (same BEACON_DATA_DIR) first")
        self.fake_url = card.fake_url.rstrip("/")
        self.api_url = card.health_urls["api"].removesuffix("/healthz")
        self.user, self.name, self.timeout = user, name, timeout
        self.user_key = make_user_key("whatsapp", card.phone_number_id, user)
        self._http = httpx.Client(timeout=30, headers={
            "Authorization": f"Bearer {self.settings.api.token.get_secret_value()}"})

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> StackChat:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def say(self, text: str) -> list[BeaconMessage]:
        """The user writes ``text``; the bot's replies, once all were sent to the fake Cloud API."""
        return self._exchange({"text": text}, repr(text))

    def press(self, button_id: str, title: str | None = None) -> list[BeaconMessage]:
        """The user taps the reply button ``button_id``; the bot's replies, as ``say``."""
        return self._exchange({"button": {"id": button_id, "title": title or button_id}}, f"button {button_id!r}")

    def _exchange(self, what: dict[str, Any], text: str) -> list[BeaconMessage]:
        after = self._http.get(f"{self.fake_url}/_fake/stats").json()["last_seq"]
        said = self._http.post(f"{self.fake_url}/_fake/say", json={"from": self.user, "name": self.name, **what})
        if said.status_code != 200:
            raise AssertionError(f"the gateway did not accept {text} from {self.user}: {said.text}")
        wamid = said.json()["wamid"]
        deadline = time.monotonic() + self.timeout
        replies = self._stored_replies(wamid, deadline)
        sent = 0
        while sent < len(replies):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"{len(replies)} replies to {text} stored, {sent} sent to the fake Cloud API "
                                     f"within {self.timeout:.0f}s")
            items = self._http.get(f"{self.fake_url}/_fake/sent",
                                   params={"after": after, "wait": min(remaining, 10)}).json()
            for item in items:
                after = max(after, item["seq"])
                if str(item.get("to") or "").lstrip("+") == self.user and item["body"].get("status") != "read":
                    sent += 1
        return replies

    def _stored_replies(self, wamid: str, deadline: float) -> list[BeaconMessage]:
        """The replies stored with the inbound message ``wamid`` (in its transaction), in order."""
        while time.monotonic() < deadline:
            try:
                resp = self._http.get(f"{self.api_url}/v1/users/{self.user_key}/messages", params={"limit": 50})
            except httpx.TransportError:  # the API restarting (beacon dev --reload): the message waits for it too
                time.sleep(0.2)
                continue
            if resp.status_code == 200:
                stored = [BeaconMessage.model_validate(m["message"]) for m in resp.json()["messages"]]
                inbound = next((m for m in stored if m.channel_message_id == wamid), None)
                if inbound is not None:
                    return [m for m in reversed(stored) if m.reply_to_id == inbound.id]  # newest first: reversed
            time.sleep(0.1)
        raise AssertionError(f"message {wamid} of {self.user} not processed within {self.timeout:.0f}s")
