"""The API's front door, as ASGI middleware: the service token is checked and the body size bounded
before any route reads (let alone parses) a byte of the body."""

from __future__ import annotations

import hmac
import logging
from collections.abc import Sequence

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from beacon.errors import BeaconError

log = logging.getLogger(__name__)

#: Paths served without the service token (probes, metrics and the API's own documentation).
PUBLIC_PATHS = frozenset(
    {"/healthz", "/readyz", "/metrics", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}
)

UNAUTHORIZED = "missing or wrong service token: send 'Authorization: Bearer <BEACON_API_TOKEN>'"


class BodyTooLarge(BeaconError):
    """A request body grew past the limit while it was being read."""


def token_matches(header: bytes, token: bytes) -> bool:
    """``Authorization: Bearer <token>`` with the right token (constant-time comparison)."""
    scheme, _, given = header.partition(b" ")
    return scheme.lower() == b"bearer" and hmac.compare_digest(given.strip(), token)


class Guard:
    """401 without the service token and 413 for a body over ``max_body_bytes``, both before the
    body is read: by its Content-Length when it has one, else as soon as the chunks read pass the limit."""

    def __init__(self, app: ASGIApp, *, token: bytes, max_body_bytes: int) -> None:
        self.app = app
        self.token = token
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        if scope["path"] not in PUBLIC_PATHS and not token_matches(headers.get(b"authorization", b""), self.token):
            await _answer(send, 401, UNAUTHORIZED, [(b"www-authenticate", b"Bearer")])
            return
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body_bytes:
            await _answer(send, 413, self._too_large(scope, int(length)))
            return
        seen = 0
        refused = answered = False

        async def bounded_receive() -> Message:
            # Past the limit the route sees a failed read (it answers some error); whatever it
            # answers is replaced by the 413 below.
            nonlocal seen, refused
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body_bytes:
                    refused = True
                    raise BodyTooLarge(f"request body over {self.max_body_bytes} bytes")
            return message

        async def replacing_send(message: Message) -> None:
            nonlocal answered
            if not refused:
                await send(message)
            elif not answered and message["type"] == "http.response.start":
                answered = True
                await _answer(send, 413, self._too_large(scope, seen))

        try:
            await self.app(scope, bounded_receive, replacing_send)
        except BodyTooLarge:
            if not answered:
                await _answer(send, 413, self._too_large(scope, seen))

    def _too_large(self, scope: Scope, size: int) -> str:
        log.warning(
            "refused %s %s: body of %d+ bytes is over BEACON_API_MAX_BODY_BYTES=%d (answered 413)",
            scope["method"],
            scope["path"],
            size,
            self.max_body_bytes,
        )
        return (
            f"request body over {self.max_body_bytes} bytes (BEACON_API_MAX_BODY_BYTES): send smaller messages "
            "or fewer per batch"
        )


async def _answer(send: Send, status: int, detail: str, headers: Sequence[tuple[bytes, bytes]] = ()) -> None:
    body = orjson.dumps({"detail": detail})
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
