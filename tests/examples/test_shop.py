"""The example shop bot (examples/shop) through the real pipeline and a real SQLite database: its
own migrated orders table, the menu, the return flow, handoff, and the agent's order tool."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import orjson
import pytest
from sqlalchemy import create_engine, inspect

from beacon.messages import BeaconMessage
from beacon.ops.process import free_port
from beacon.testing import BotTester
from tests.local_http import local_http

PIPELINE = "commands,shop.bot:bot,agent,fallback"
ADA = "447700900123"  # owns demo orders 1001 (delivered) and 1002 (shipped)


def _buttons(reply: BeaconMessage) -> dict[str, str]:
    body = orjson.loads(reply.payload or "{}")
    return {b["reply"]["id"]: b["reply"]["title"] for b in body["action"]["buttons"]}


def _texts(replies: list[BeaconMessage]) -> list[str | None]:
    return [r.text for r in replies]


async def test_start_applies_the_shops_own_migration_beside_beacons(tmp_path: Path) -> None:
    async with BotTester(PIPELINE, tmp_path):
        pass
    engine = create_engine(f"sqlite:///{tmp_path / 'bot.db'}")
    try:
        tables = set(inspect(engine).get_table_names())
        with engine.connect() as conn:
            shop_version = conn.exec_driver_sql("SELECT version_num FROM shop_alembic_version").scalar()
            orders = conn.exec_driver_sql("SELECT count(*) FROM shop_orders").scalar()
    finally:
        engine.dispose()
    assert {"alembic_version", "shop_alembic_version", "shop_orders", "user_states"} <= tables
    assert shop_version == "shop_0001" and orders == 3


async def test_menu_offers_three_buttons_and_order_lookup_shows_only_the_users_orders(tmp_path: Path) -> None:
    async with BotTester(PIPELINE, tmp_path) as bot:
        [menu] = await bot.say("hi", user=ADA)
        assert _buttons(menu) == {"track": "Track an order", "return": "Return an item", "human": "Talk to a person"}
        assert _texts(await bot.say("/order 1001", user=ADA)) == ["Order 1001: Blue kettle, delivered, £34.99"]
        # 1003 is someone else's.
        assert _texts(await bot.say("/order 1003", user=ADA)) == ["I can't find an order 1003 of yours."]
        [orders] = await bot.press("track", user=ADA)
        rows = orjson.loads(orders.payload or "{}")["action"]["sections"][0]["rows"]
        assert [(r["id"], r["title"]) for r in rows] == [("track:1001", "1001 Blue kettle"),
                                                         ("track:1002", "1002 Tea towels (3)")]
        assert _texts(await bot.press("track:1002", user=ADA)) == ["Order 1002: Tea towels (3), shipped, £12.50"]
        assert _texts(await bot.say("/order", user="447700900456")) == ["Order 1003: Teapot, placed, £29.00"]


async def test_a_return_goes_number_reason_confirm_and_records_one_event(tmp_path: Path) -> None:
    async with BotTester(PIPELINE, tmp_path) as bot:
        assert _texts(await bot.press("return", user=ADA)) == [
            "Which order would you like to return? Send its number (or /cancel)."]
        assert _texts(await bot.say("soon", user=ADA)) == ["Please send the order number, like 1001 (or /cancel)."]
        [shipped] = await bot.say("1002", user=ADA)
        assert shipped.text == "Order 1002: Tea towels (3), shipped, £12.50: only delivered orders can be returned."
        await bot.press("return", user=ADA)
        [why] = await bot.say("#1001", user=ADA)
        assert set(_buttons(why)) == {"reason:damaged", "reason:wrong", "reason:unwanted"}
        assert _texts(await bot.say("it broke", user=ADA)) == [
            "Please use the buttons above, or /cancel to stop the return."]
        [sure] = await bot.press("reason:damaged", user=ADA)
        assert sure.text == "Return the Blue kettle (order 1001): Arrived damaged. Confirm?"
        [booked] = await bot.press("confirm", user=ADA)
        assert (booked.text or "").startswith("Return of order 1001 booked")
        assert await bot.state(ADA) == {}
        assert await bot.outbox(ADA) == [("return_requested", {"order": "1001", "reason": "Arrived damaged",
                                                               "user": f"whatsapp:100:{ADA}"})]
        assert _texts(await bot.press("confirm", user=ADA)) == ["There is no return to confirm: send /return."]
        assert len(await bot.outbox()) == 1


async def test_cancel_and_timeout_reset_the_return(tmp_path: Path) -> None:
    async with BotTester("commands,shop.bot:bot,fallback", tmp_path) as bot:
        await bot.press("return", user=ADA)
        assert _texts(await bot.say("/cancel", user=ADA)) == ["Return cancelled."]
        assert await bot.state(ADA) == {}
        await bot.press("return", user=ADA)
        # 20 minutes later the flow has expired: "1001" is plain text again.
        late = bot.message(ADA, text="1001")
        late = late.model_copy(update={"created_at": late.created_at + timedelta(minutes=20)})
        assert _texts(await bot.send(late)) == ["You said: 1001"]
        assert "return" not in await bot.state(ADA)


async def test_human_hands_off_and_ends_the_return(tmp_path: Path) -> None:
    async with BotTester(PIPELINE, tmp_path) as bot:
        await bot.press("return", user=ADA)
        assert _texts(await bot.press("human", user=ADA)) == ["A person from our team will answer you here soon."]
        state = await bot.state(ADA)
        assert "return" not in state and state["handoff"]["reason"] == "asked for a person"
        assert await bot.outbox(ADA) == [
            ("handoff", {"reason": "asked for a person", "user_key": f"whatsapp:100:{ADA}"})]


@pytest.fixture(scope="module")
def fake_llm() -> Iterator[str]:
    """``beacon fake-openai`` as its own process; yields its base URL."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "beacon.fakes.openai", "--port", str(port)])
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                local_http.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except httpx.HTTPError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the fake OpenAI endpoint did not start") from None
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


async def test_the_agent_answers_the_rest_and_its_tool_reads_the_users_orders(tmp_path: Path, fake_llm: str) -> None:
    async with BotTester(PIPELINE, tmp_path, llm_base_url=fake_llm, llm_model="fake") as bot:
        assert _texts(await bot.say("where is my parcel?", user=ADA)) == ["Echo: where is my parcel?"]
        [answer] = await bot.say('!tool shop_orders {"number": "1002"}', user=ADA)
        assert answer.text == ('Tool results: [{"number": "1002", "customer": "447700900123", '
                               '"item": "Tea towels (3)", "status": "shipped", "total_cents": 1250}]')
        [other] = await bot.say('!tool shop_orders {"number": "1002"}', user="447700900456")
        assert other.text == "Tool results: no such order"
