"""The routing layer: commands, texts, regexes, buttons, kinds, predicates, fallbacks, nesting."""

from __future__ import annotations

from typing import Any

from beacon.bot import BotAnswer, Router, Turn
from beacon.messages import BeaconMessage, InteractiveReply, Location
from tests.conftest import make_settings


def turn_of(text: str | None = None, **fields: Any) -> Turn:
    msg = BeaconMessage.inbound_text(channel="telegram", account="1", user_id="2", text=text or "")
    msg = msg.model_copy(update={"text": text, **fields})
    return Turn(message=msg, settings=make_settings(), sessions=None)  # type: ignore[arg-type]


def shop() -> Router:
    router = Router("shop")

    @router.command("/order", "buy")
    async def order(turn: Turn) -> BotAnswer:
        return f"order({turn.args})"

    @router.text("hi", "Hello")
    async def hello(turn: Turn) -> BotAnswer:
        return "hello"

    @router.regex(r"order (\d+)")
    async def lookup(turn: Turn) -> BotAnswer:
        assert turn.match is not None
        return f"lookup {turn.match.group(1)}"

    @router.button("yes", "size:*")
    async def chosen(turn: Turn) -> BotAnswer:
        return f"button {turn.button_id}"

    @router.kind("image", "location")
    async def media(turn: Turn) -> BotAnswer:
        return f"kind {turn.kind}"

    @router.when(lambda turn: turn.state.get("step") == "name")
    async def name(turn: Turn) -> BotAnswer:
        return None if turn.text == "pass" else f"name {turn.text}"

    return router


async def test_each_route_kind_takes_its_messages() -> None:
    router = shop()
    press = InteractiveReply(type="button_reply", id="size:xl")
    cases: list[tuple[Turn, BotAnswer]] = [
        (turn_of("/order 2 pizzas"), "order(2 pizzas)"),
        (turn_of("/ORDER@shopbot"), "order()"),
        (turn_of("/buy now"), "order(now)"),
        (turn_of("  HELLO "), "hello"),
        (turn_of("where is order 123 please"), "lookup 123"),
        (turn_of(None, kind="interactive", interactive_reply=InteractiveReply(type="button_reply", id="yes")),
         "button yes"),
        (turn_of(None, kind="interactive", interactive_reply=press), "button size:xl"),
        (turn_of(None, kind="location", location=Location(latitude=1, longitude=2)), "kind location"),
        (turn_of("hi there"), None),
        (turn_of(None, kind="interactive", interactive_reply=InteractiveReply(type="button_reply", id="no")), None),
    ]
    for turn, expected in cases:
        assert await router.handle(turn) == expected, turn.message


async def test_a_route_that_passes_lets_the_next_one_try_then_the_fallback() -> None:
    router = shop()

    @router.fallback
    async def otherwise(turn: Turn) -> BotAnswer:
        return "fallback"

    named = turn_of("Ada")
    named.state["step"] = "name"
    assert await router.handle(named) == "name Ada"
    passing = turn_of("pass")
    passing.state["step"] = "name"
    assert await router.handle(passing) == "fallback"
    assert await router.handle(turn_of("/nothing")) == "fallback"


async def test_routers_nest_in_order_and_an_included_fallback_answers_before_the_outer_one() -> None:
    outer, inner = Router("outer"), Router("inner")

    @outer.command("/start")
    async def start(turn: Turn) -> BotAnswer:
        return "outer start"

    outer.include(inner)

    @inner.command("/start", "/help")
    async def inner_help(turn: Turn) -> BotAnswer:
        return "inner " + turn.text

    @outer.fallback
    async def outer_fallback(turn: Turn) -> BotAnswer:
        return "outer fallback"

    assert await outer.handle(turn_of("/start")) == "outer start"
    assert await outer.handle(turn_of("/help")) == "inner /help"
    assert await outer.handle(turn_of("other")) == "outer fallback"

    @inner.fallback
    async def inner_fallback(turn: Turn) -> BotAnswer:
        return "inner fallback"

    assert await outer.handle(turn_of("other")) == "inner fallback"
