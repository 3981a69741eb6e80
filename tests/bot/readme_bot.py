"""The handlers shown in the README's "Write your bot", verbatim (tests/bot/test_readme_bot.py runs them)."""

from beacon.bot import BotAnswer, Router, Turn

bot = Router()

@bot.command("/start")
async def start(turn: Turn) -> BotAnswer:
    turn.state["visits"] = turn.state.get("visits", 0) + 1        # saved with the reply, atomically
    return [f"Hello {turn.user.profile_name}!", turn.buttons("Shall we?", {"go": "Let's go"})]

@bot.button("go")
async def go(turn: Turn) -> BotAnswer:
    event = turn.outbox.add("started", {"visits": turn.state["visits"]})   # delivered after commit
    return f"Started (ref {event.id[:8]})."
