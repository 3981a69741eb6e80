"""The example bot (examples/orderbot) through the real pipeline and a real SQLite database."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import orjson

from beacon.messages import InteractiveReply
from beacon.testing import BotTester

PIPELINE = "commands,orderbot.handlers:bot,fallback"


def _button_ids(reply_payload: str | None) -> list[str]:
    body = orjson.loads(reply_payload or "{}")
    return [b["reply"]["id"] for b in body["action"]["buttons"]]


async def test_start_greets_by_name_and_offers_the_order_button(tmp_path: Path) -> None:
    async with BotTester(PIPELINE, tmp_path) as bot:
        greeting, menu = await bot.say("/start", user="ada")
    assert greeting.text == "Hi Ada! I take food orders."
    assert menu.kind == "interactive" and _button_ids(menu.payload) == ["order"]


async def test_an_order_goes_dish_quantity_confirm_and_records_one_event(tmp_path: Path) -> None:
    async with BotTester(PIPELINE, tmp_path) as bot:
        [dishes] = await bot.press("order")
        assert _button_ids(dishes.payload) == ["dish:pizza", "dish:salad", "dish:soup"]
        assert [r.text for r in await bot.press("dish:soup")] == ["How many Soup? (1-9)"]
        assert [r.text for r in await bot.say("many")] == ["Please answer with a number from 1 to 9, or /cancel."]
        [question] = await bot.say("2")
        assert question.text == "2 x Soup: shall I place the order?"
        assert (await bot.state())["order"]["step"] == "confirm"
        [placed] = await bot.press("confirm")
        assert (placed.text or "").startswith("Order placed: 2 x Soup")
        assert await bot.state() == {"orders_placed": 1}
        assert await bot.outbox() == [("order_placed", {"dish": "soup", "quantity": 2,
                                                        "user": "whatsapp:100:u1"})]
        # Confirming again places nothing: the order is gone from the state.
        assert [r.text for r in await bot.press("confirm")] == ["There is no order to confirm: send /order."]
        assert len(await bot.outbox()) == 1


async def test_a_rerun_of_the_confirming_message_answers_the_same_and_places_no_second_order(
    tmp_path: Path,
) -> None:
    async with BotTester(PIPELINE, tmp_path) as bot:
        await bot.press("order")
        await bot.press("dish:pizza")
        await bot.say("1")
        confirm = bot.message(kind="interactive", text=None,
                              interactive_reply=InteractiveReply(type="button_reply", id="confirm"))
        first = await bot.send(confirm)
        again = await bot.send(confirm)
        assert again == first
        assert len(await bot.outbox()) == 1 and (await bot.state())["orders_placed"] == 1


async def test_cancel_and_timeout_end_the_flow(tmp_path: Path) -> None:
    async with BotTester(PIPELINE, tmp_path) as bot:
        await bot.press("order")
        assert [r.text for r in await bot.say("/cancel")] == ["Order cancelled."]
        assert "order" not in await bot.state()
        await bot.press("order")
        await bot.press("dish:salad")
        # A message 20 minutes later: the quantity step has expired, so "3" is just text again.
        late = bot.message(text="3")
        late = late.model_copy(update={"created_at": late.created_at + timedelta(minutes=20)})
        assert [r.text for r in await bot.send(late)] == ["You said: 3"]
        assert "order" not in await bot.state()


async def test_handoff_silences_the_bot_with_an_outbox_event(tmp_path: Path) -> None:
    async with BotTester(PIPELINE, tmp_path) as bot:
        [note] = await bot.say("/kitchen")
        assert note.text == "A person from our team will answer you here soon."
        assert await bot.outbox() == [("handoff", {"reason": "asked for a person", "user_key": "whatsapp:100:u1"})]
        assert (await bot.state())["handoff"]["reason"] == "asked for a person"
        assert await bot.say("hello?") == []  # a person answers now: recorded, not answered


async def test_typed_answers_work_where_buttons_are_offered(tmp_path: Path) -> None:
    async with BotTester(PIPELINE, tmp_path) as bot:
        await bot.say("/order")
        assert [r.text for r in await bot.say("tea")] == ["Please pick one of: Pizza, Salad, Soup (or /cancel)."]
        assert [r.text for r in await bot.say("Pizza")] == ["How many Pizza? (1-9)"]
        await bot.say("3")
        [placed] = await bot.say("yes")
        assert (placed.text or "").startswith("Order placed: 3 x Pizza")
        # A stale dish button after the order is placed: the menu has expired.
        assert [r.text for r in await bot.press("dish:soup")] == ["That menu has expired: send /order to start again."]
