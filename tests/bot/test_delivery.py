"""Outbox delivery in process: to a callback, in the order recorded, retried until it succeeds;
a receiver that cannot be imported stops the API at start-up."""

from __future__ import annotations

from pathlib import Path

import pytest

from beacon.bot import OutboxItem, Router, Turn
from beacon.bot.delivery import make_sink
from beacon.bot.persist import StateNotJson
from beacon.errors import ConfigError
from beacon.testing import BotTester
from tests.conftest import make_settings

received: list[OutboxItem] = []
failures_left = {"n": 0}
bot = Router()


@bot.text("two")
async def two(turn: Turn) -> str:
    turn.outbox.add("first", {"n": 1})
    turn.outbox.add("second", {"n": 2})
    return "recorded"


async def receive(item: OutboxItem) -> None:
    if failures_left["n"] > 0:
        failures_left["n"] -= 1
        raise ConnectionError("receiver down")
    received.append(item)


async def test_events_reach_the_callback_in_order_after_failed_attempts(tmp_path: Path) -> None:
    received.clear()
    failures_left["n"] = 3
    async with BotTester("tests.bot.test_delivery:bot", tmp_path, outbox_callback="tests.bot.test_delivery:receive",
                         outbox_poll_interval=0.05, outbox_retry_base_delay=0.01,
                         outbox_retry_max_delay=0.05) as tester:
        assert [r.text for r in await tester.say("two")] == ["recorded"]
        delivery = tester.outbox_delivery()
        for _ in range(400):
            if delivery.delivered == 2:
                break
            await delivery.deliver_due()
        assert delivery.delivered == 2
    assert [(i.kind, i.data) for i in received] == [("first", {"n": 1}), ("second", {"n": 2})]
    assert failures_left["n"] == 0 and received[0].attempts >= 1


@pytest.mark.parametrize(("callback", "expected"), [
    ("tests.bot.nosuch:receive", "could not be imported: ModuleNotFoundError"),
    ("tests.bot.test_delivery:missing", "could not be imported: AttributeError"),
    ("tests.bot.test_delivery:received", "is not an async function"),
])
def test_a_bad_callback_is_refused_with_the_reason(callback: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        make_sink(make_settings(outbox_callback=callback))


@bot.text("bad state")
async def bad_state(turn: Turn) -> str:
    turn.state["when"] = {1, 2}  # a set: not JSON
    return "never stored"


async def test_a_state_json_cannot_hold_fails_the_turn_naming_message_and_user(tmp_path: Path) -> None:
    async with BotTester("tests.bot.test_delivery:bot", tmp_path) as tester:
        with pytest.raises(StateNotJson, match=r"turn.state of message .* \(user whatsapp:100:u1\) cannot be saved"):
            await tester.say("bad state")
        assert await tester.state() == {}
