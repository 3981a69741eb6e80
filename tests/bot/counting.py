"""A bot for the tests: every ``count`` adds one to the user's state and records one outbox event."""

from __future__ import annotations

from beacon.bot import BotAnswer, Router, Turn

bot = Router("counting")


@bot.text("count")
async def count(turn: Turn) -> BotAnswer:
    n = int(turn.state.get("n", 0)) + 1
    turn.state["n"] = n
    turn.outbox.add("counted", {"n": n, "idempotency_key": turn.idempotency_key})
    return [f"counted {n}", turn.buttons("again?", {"again": "Again"})]
