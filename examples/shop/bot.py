"""The shop's conversations: a button menu, order lookup, a return flow kept in the user's state,
handoff to a human, and an order-lookup tool for the LLM agent that answers everything else.

Run it: ``PYTHONPATH=examples BEACON_API_PIPELINE=commands,shop.bot:bot,agent,fallback beacon dev``
(with ``BEACON_LLM_BASE_URL`` set, the agent answers what the bot does not; else the fallback)."""

from __future__ import annotations

import json
import logging
import re
from dataclasses import asdict
from datetime import datetime, timedelta
from typing import Any

from beacon.api.tools import register_tool
from beacon.bot import BotAnswer, Router, Turn
from beacon.config import Settings
from shop import migrate
from shop.orders import find_order, orders_of

log = logging.getLogger(__name__)

#: A return left unfinished this long is forgotten; the next message starts afresh.
RETURN_TIMEOUT = timedelta(minutes=15)
REASONS = {"reason:damaged": "Arrived damaged", "reason:wrong": "Wrong item", "reason:unwanted": "No longer needed"}
ORDER_NUMBER = re.compile(r"#?(\d{3,10})")


class ShopBot(Router):
    """The shop's router; applies the shop's migrations when the API starts it."""

    async def start(self, settings: Settings) -> None:
        revision = await migrate.upgrade(settings)
        log.info("shop: orders table at migration %s", revision)


bot = ShopBot("shop")


def _flow(turn: Turn) -> dict[str, Any] | None:
    flow = turn.state.get("return")
    return flow if isinstance(flow, dict) else None


def _at(step: str) -> Any:
    return lambda turn: (_flow(turn) or {}).get("step") == step


@bot.when(lambda turn: _flow(turn) is not None)
async def expire(turn: Turn) -> BotAnswer:
    """Forget a return left for longer than RETURN_TIMEOUT (the message then routes afresh)."""
    started = datetime.fromisoformat((_flow(turn) or {})["started"])
    if turn.message.created_at - started > RETURN_TIMEOUT:
        del turn.state["return"]
    return None


@bot.command("/start", "/menu")
@bot.text("hi", "hello", "menu")
async def menu(turn: Turn) -> BotAnswer:
    name = turn.user.profile_name or "there"
    return turn.buttons(f"Hi {name}! How can I help?",
                        {"track": "Track an order", "return": "Return an item", "human": "Talk to a person"})


@bot.command("/cancel")
@bot.button("cancel")
async def cancel(turn: Turn) -> BotAnswer:
    if turn.state.pop("return", None) is None:
        return "Nothing to cancel."
    return "Return cancelled."


@bot.command("/order")
async def order(turn: Turn) -> BotAnswer:
    """``/order 1001``: that order's status; ``/order``: the user's orders."""
    if turn.args:
        found = await find_order(turn.sessions, turn.args, turn.user.user_id)
        return found.describe() if found else f"I can't find an order {turn.args} of yours."
    mine = await orders_of(turn.sessions, turn.user.user_id)
    return "\n".join(o.describe() for o in mine) if mine else "You have no orders with us yet."


@bot.button("track")
async def track(turn: Turn) -> BotAnswer:
    mine = await orders_of(turn.sessions, turn.user.user_id)
    if not mine:
        return "You have no orders with us yet."
    rows = {f"track:{o.number}": f"{o.number} {o.item}"[:24] for o in mine}  # WhatsApp: row titles <= 24
    return turn.list_menu("Which order?", "Your orders", rows)


@bot.button("track:*")
async def track_one(turn: Turn) -> BotAnswer:
    found = await find_order(turn.sessions, (turn.button_id or "").removeprefix("track:"), turn.user.user_id)
    return found.describe() if found else "That order is no longer there."


@bot.command("/human")
@bot.button("human")
async def human(turn: Turn) -> BotAnswer:
    turn.state.pop("return", None)
    return turn.handoff("asked for a person")


# --- the return flow: order number -> lookup -> reason buttons -> confirm ------------------------


@bot.command("/return")
@bot.button("return")
async def begin_return(turn: Turn) -> BotAnswer:
    turn.state["return"] = {"step": "number", "started": turn.message.created_at.isoformat()}
    return "Which order would you like to return? Send its number (or /cancel)."


@bot.when(_at("number"))
async def return_number(turn: Turn) -> BotAnswer:
    flow = _flow(turn) or {}
    number = ORDER_NUMBER.fullmatch(turn.text)
    if number is None:
        return "Please send the order number, like 1001 (or /cancel)."
    found = await find_order(turn.sessions, number.group(1), turn.user.user_id)
    if found is None:
        return f"I can't find an order {number.group(1)} of yours. Try another number, or /cancel."
    if found.status != "delivered":
        del turn.state["return"]
        return f"{found.describe()}: only delivered orders can be returned."
    flow.update(step="reason", number=found.number, item=found.item)
    return turn.buttons(f"Why are you returning the {found.item}?", REASONS)


@bot.button("reason:*")
async def return_reason(turn: Turn) -> BotAnswer:
    flow = _flow(turn)
    if flow is None or flow.get("step") != "reason" or turn.button_id not in REASONS:
        return "That question has expired: send /return to start again."
    flow.update(step="confirm", reason=REASONS[turn.button_id])
    return turn.buttons(f"Return the {flow['item']} (order {flow['number']}): {flow['reason']}. Confirm?",
                        {"confirm": "Confirm return", "cancel": "Cancel"})


@bot.button("confirm")
async def confirm_return(turn: Turn) -> BotAnswer:
    flow = _flow(turn)
    if flow is None or flow.get("step") != "confirm":
        return "There is no return to confirm: send /return."
    del turn.state["return"]
    # Saved with this reply in one transaction; delivered after the commit, once per message id.
    event = turn.outbox.add("return_requested", {"order": flow["number"], "reason": flow["reason"],
                                                 "user": turn.user.key})
    return f"Return of order {flow['number']} booked (ref {event.id[:8]}). We'll email you a label."


@bot.when(lambda turn: _flow(turn) is not None)
async def return_waiting(turn: Turn) -> BotAnswer:
    """Anything else during the flow: say what the bot is waiting for."""
    return "Please use the buttons above, or /cancel to stop the return."


# --- a tool for the LLM agent (BEACON_API_PIPELINE "agent" after the bot) -----------------------


@register_tool(
    "shop_orders",
    "The orders of the user you are talking to (number, item, status, total), or one order by number.",
    {"type": "object", "properties": {"number": {"type": "string", "description": "an order number, e.g. 1001"}}},
)
async def shop_orders_tool(args: dict[str, Any], turn: Turn) -> str:
    number = str(args.get("number") or "")
    mine = [o for o in await orders_of(turn.sessions, turn.user.user_id) if not number or o.number == number]
    return json.dumps([asdict(o) for o in mine]) if mine else "no such order"
