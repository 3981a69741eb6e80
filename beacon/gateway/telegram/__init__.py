"""Telegram through the Bot API: the channel's own parts (auth, parse, sends, errors, client)."""

CHANNEL = "telegram"


def bot_id_of(token: str) -> str:
    """The bot's numeric id: the part of the token before ``:`` (``123456:ABC...`` -> ``123456``)."""
    head, sep, _ = token.partition(":")
    if not sep or not head.isdigit():
        raise ValueError("a Telegram bot token looks like <bot id>:<secret> (the bot id is digits)")
    return head
