"""Write your bot in Python: handlers, routing, the turn they get, the outbox.

    from beacon.bot import Router, Turn

    bot = Router()

    @bot.command("/start")
    async def start(turn: Turn) -> str:
        return f"Hello {turn.user.profile_name}!"

Then ``BEACON_API_PIPELINE='["commands", "mybot.handlers:bot", "fallback"]'``.
"""

from beacon.bot.load import BotAnswer, HandlerImportError
from beacon.bot.media import MediaUnavailable
from beacon.bot.outbox import Outbox, OutboxItem
from beacon.bot.router import Router
from beacon.bot.turn import BotUser, Turn

__all__ = [
    "BotAnswer",
    "BotUser",
    "HandlerImportError",
    "MediaUnavailable",
    "Outbox",
    "OutboxItem",
    "Router",
    "Turn",
]
