"""The process runner every channel's gateway shares (``beacon.gateway.service.Gateway`` is the one
``ChannelGateway``; what a channel implements is ``beacon.gateway.channel.Channel``).

A gateway takes the settings, serves webhooks into ``bm_in`` and sends its own channel's messages
from ``bm_out`` until ``stop()``.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable, Coroutine
from typing import Any, Protocol, TypeVar

from beacon.config import Settings
from beacon.errors import KafkaAuthenticationError

T = TypeVar("T")


class ChannelGateway(Protocol):
    """One channel's gateway: both halves in one process."""

    name: str

    async def serve(self) -> None:
        """Run until ``stop()``; then stop accepting webhooks, finish in-flight sends, commit, return."""

    def stop(self) -> None:
        """Ask ``serve()`` to wind down (called from a signal handler)."""


def run_gateway(factory: Callable[[Settings], ChannelGateway], settings: Settings) -> None:
    """Run a channel's gateway until SIGTERM / SIGINT."""

    async def main() -> None:
        gateway = factory(settings)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, gateway.stop)
        await gateway.serve()

    try:
        run_fast(main())
    except KafkaAuthenticationError as exc:
        raise SystemExit(f"error: {exc}") from exc


def run_fast(coro: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run`` on uvloop when it is installed (it comes with uvicorn[standard]): HTTP-heavy
    processes such as gateways and the fake Cloud API serve about half again as many requests."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)
