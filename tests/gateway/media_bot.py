"""A bot that reads the bytes of what users send (tests/gateway/test_media*.py run it through the API)."""

from __future__ import annotations

import hashlib

from beacon.bot import MediaUnavailable, Router, Turn

bot = Router()


@bot.kind("image", "audio", "document", "video", "sticker")
async def describe(turn: Turn) -> str:
    """Answers the size and SHA-256 of the media, or why it could not be read."""
    try:
        data = await turn.media_bytes()
    except MediaUnavailable as exc:
        return f"unavailable: {exc}"
    return f"{len(data)} bytes, sha256 {hashlib.sha256(data).hexdigest()}"
