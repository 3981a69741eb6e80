"""An order bot: ``/start``, a multi-step order kept in the user's state (dish -> quantity ->
confirm, reset after FLOW_TIMEOUT or by ``/cancel``), buttons, and an ``order_placed`` outbox event
that the API delivers once the turn has committed.

Run it: ``PYTHONPATH=examples BEACON_API_PIPELINE=commands,orderbot.handlers:bot,fallback beacon dev``.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from beacon.bot import BotAnswer, Router, Turn

bot = Router("orderbot")

MENU = {"pizza": "Pizza", "salad": "Salad", "soup": "Soup"}
#: An order left unfinished this long is forgotten; the next message starts afresh.
FLOW_TIMEOUT = timedelta(minutes=15)


def _order(turn: Turn) -> dict[str, Any] | None:
    order = turn.state.get("order")
    return order if isinstance(order, dict) else None


def _step(step: str) -> Any:
    return lambda turn: (_order(turn) or {}).get("step") == step


@bot.when(lambda turn: _order(turn) is not None)
async def expire(turn: Turn) -> BotAnswer:
    """Forget an order the user left for longer than FLOW_TIMEOUT (the message then routes afresh)."""
    started = datetime.fromisoformat((_order(turn) or {})["started"])
    if turn.message.created_at - started > FLOW_TIMEOUT:
        del turn.state["order"]
    return None


@bot.command("/start")
async def start(turn: Turn) -> BotAnswer:
    turn.state.pop("order", None)
    name = turn.user.profile_name or "there"
    return [f"Hi {name}! I take food orders.", turn.buttons("What would you like?", {"order": "Order food"})]


@bot.command("/cancel")
@bot.button("cancel")
async def cancel(turn: Turn) -> BotAnswer:
    if turn.state.pop("order", None) is None:
        return "Nothing to cancel."
    return "Order cancelled."


@bot.command("/order")
@bot.button("order")
async def begin(turn: Turn) -> BotAnswer:
    turn.state["order"] = {"step": "dish", "started": turn.message.created_at.isoformat()}
    return turn.buttons("Which dish?", {f"dish:{key}": title for key, title in MENU.items()})


@bot.button("dish:*")
@bot.when(_step("dish"))  # typed instead of tapped: "pizza"
async def dish(turn: Turn) -> BotAnswer:
    order = _order(turn)
    chosen = (turn.button_id or "").removeprefix("dish:") or turn.text.lower()
    if order is None or order.get("step") != "dish":
        return "That menu has expired: send /order to start again."
    if chosen not in MENU:
        return "Please pick one of: " + ", ".join(MENU.values()) + " (or /cancel)."
    order.update(step="quantity", dish=chosen)
    return f"How many {MENU[chosen]}? (1-9)"


@bot.when(_step("quantity"))
async def quantity(turn: Turn) -> BotAnswer:
    order = _order(turn) or {}
    if turn.kind != "text" or not turn.text.isdigit() or not 1 <= int(turn.text) <= 9:
        return "Please answer with a number from 1 to 9, or /cancel."
    order.update(step="confirm", quantity=int(turn.text))
    return turn.buttons(f"{order['quantity']} x {MENU[order['dish']]}: shall I place the order?",
                        {"confirm": "Place order", "cancel": "Cancel"})


@bot.button("confirm")
@bot.when(lambda turn: _step("confirm")(turn) and turn.text.lower() == "yes")
async def confirm(turn: Turn) -> BotAnswer:
    order = _order(turn)
    if order is None or order.get("step") != "confirm":
        return "There is no order to confirm: send /order."
    del turn.state["order"]
    turn.state["orders_placed"] = int(turn.state.get("orders_placed", 0)) + 1
    # Saved with this reply in one transaction; delivered after the commit, once per message id.
    event = turn.outbox.add("order_placed", {"dish": order["dish"], "quantity": order["quantity"],
                                             "user": turn.message.user_key})
    return f"Order placed: {order['quantity']} x {MENU[order['dish']]} (ref {event.id[:8]})."


@bot.command("/kitchen")
async def kitchen(turn: Turn) -> BotAnswer:
    # The built-in /human hands off too; this one tells the person why (the user wants the kitchen).
    return turn.handoff("asked for a person")
