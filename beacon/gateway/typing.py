"""Keeps a typing indicator alive while a user's turn is processed: after the channel showed it (a
``read_receipt`` with ``metadata["typing"] == "true"``), channels whose indicator fades before an LLM
answers (Telegram's lasts 5 s) get it again every ``Channel.typing_refresh`` seconds until the next
message to that user is handled (the reply), the gateway stops, or BEACON_GATEWAY_TYPING_MAX_SECONDS
pass (a turn that ended with no reply)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from beacon.errors import BeaconError
from beacon.messages import BeaconMessage


def shows_typing(msg: BeaconMessage) -> bool:
    """Whether ``msg`` asks the channel to show typing."""
    return msg.kind == "read_receipt" and msg.metadata.get("typing") == "true"


class TypingRefresher:
    """One refresh task per user key, at most; started after a typing receipt went, stopped by the reply."""

    def __init__(self, channel: str, every: float | None, max_seconds: float) -> None:
        self.every = every
        self.max_seconds = max_seconds
        self.log = logging.getLogger(f"beacon.gateway.{channel}.typing")
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def start(self, msg: BeaconMessage, send: Callable[[], Awaitable[object]]) -> None:
        """Refresh the indicator ``msg`` showed, by calling ``send`` again, until ``stop(msg.user_key)``."""
        if not self.every or self.every <= 0:
            return  # the channel's indicator lasts until the reply (WhatsApp: up to 25 s)
        self.stop(msg.user_key)
        self._tasks[msg.user_key] = asyncio.create_task(self._refresh(msg, send), name=f"typing-{msg.user_key}")

    def stop(self, user_key: str) -> None:
        """The reply to ``user_key`` is about to go: no more typing for them."""
        task = self._tasks.pop(user_key, None)
        if task is not None:
            task.cancel()

    async def close(self) -> None:
        tasks = list(self._tasks.values())
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _refresh(self, msg: BeaconMessage, send: Callable[[], Awaitable[object]]) -> None:
        assert self.every is not None
        deadline = time.monotonic() + self.max_seconds
        try:
            while time.monotonic() + self.every <= deadline:
                await asyncio.sleep(self.every)
                try:
                    await send()
                except BeaconError as exc:  # a typing indicator is best effort: the reply is what matters
                    self.log.info("typing indicator for %s (message %s) not refreshed, stopping it: %s",
                                  msg.user_key, msg.channel_message_id, exc)
                    return
        finally:
            if self._tasks.get(msg.user_key) is asyncio.current_task():
                del self._tasks[msg.user_key]
