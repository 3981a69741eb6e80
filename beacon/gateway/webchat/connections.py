"""The open WebSockets of each visitor (a visitor may have the page open in several tabs)."""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from beacon.gateway.webchat.metrics import CONNECTIONS

log = logging.getLogger("beacon.gateway.webchat")


class Connections:
    """visitor id -> open sockets; ``push`` sends a frame to all of them."""

    def __init__(self) -> None:
        self._sockets: dict[str, set[web.WebSocketResponse]] = {}

    def add(self, visitor: str, ws: web.WebSocketResponse) -> None:
        self._sockets.setdefault(visitor, set()).add(ws)
        CONNECTIONS.inc()

    def remove(self, visitor: str, ws: web.WebSocketResponse) -> None:
        sockets = self._sockets.get(visitor)
        if sockets is not None and ws in sockets:
            sockets.discard(ws)
            CONNECTIONS.dec()
            if not sockets:
                del self._sockets[visitor]

    async def push(self, visitor: str, frame: dict[str, Any]) -> int:
        """Send ``frame`` to every open socket of the visitor; how many took it. A socket that fails is
        left to its own handler to close: the page catches up from the history when it reconnects."""
        sent = 0
        for ws in list(self._sockets.get(visitor, ())):
            if ws.closed:
                continue
            try:
                await ws.send_json(frame)
                sent += 1
            except (ConnectionError, RuntimeError) as exc:
                log.info("a socket of visitor %s went away while being written to (%s); the page catches up "
                         "on reconnect", visitor, type(exc).__name__)
        return sent

    async def close_all(self) -> None:
        for sockets in list(self._sockets.values()):
            for ws in list(sockets):
                await ws.close(code=1001, message=b"gateway stopping")

    def __len__(self) -> int:
        return sum(len(s) for s in self._sockets.values())
