"""Telegram's sending limits, per its documentation: about 30 messages per second per bot, about one
per second to one chat (short bursts tolerated), 20 per minute to one group."""

from __future__ import annotations

from dataclasses import dataclass

from beacon.config import Settings


@dataclass(frozen=True)
class ChatRate:
    """Sends per second to one chat, and how many may go at once before that rate applies (0: unlimited)."""

    rate: float
    burst: float


def is_group(user_id: str) -> bool:
    """Groups, supergroups and channels have negative chat ids; private chats positive."""
    return user_id.startswith("-")


def bot_rate(settings: Settings) -> ChatRate:
    """The limit across every chat of the bot."""
    return ChatRate(settings.telegram.rate_limit, max(settings.telegram.rate_limit, 1.0))


def chat_rate(settings: Settings, user_id: str) -> ChatRate:
    """The limit for one chat: the group rate for a group, the chat rate with its burst otherwise."""
    if is_group(user_id):
        per_minute = settings.telegram.group_rate_per_minute
        return ChatRate(per_minute / 60.0, 1.0)
    return ChatRate(settings.telegram.chat_rate, float(settings.telegram.chat_burst))
