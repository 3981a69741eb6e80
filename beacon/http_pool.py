"""A lean keep-alive HTTP/1.1 client for Beacon's own hops (the worker's calls to the API layer) and the
gateways' sends to a channel's API.

aiohttp's client spends most of a worker's HTTP CPU on machinery these calls never use (cookies,
redirects, decompression, tracing hooks, its own stream buffers). This client is an asyncio Protocol
that feeds the bytes to httptools (llhttp, the parser uvicorn serves with) and keeps the few facts a
caller needs. A pool serves one origin: at most ``limit`` connections, idle ones kept for
``keepalive`` seconds (most recently used first, so a quiet period lets the rest expire). A request
carries a bytes body; its answer comes by Content-Length, chunked or until the server closes, read
whole or line by line as it arrives (``HttpResponse.lines``). No redirects, cookies, compression,
proxies, HEAD or pipelining. TLS when the URL is ``https`` (an ``ssl.SSLContext``: the system's
trust store unless one is given). Timeouts are the caller's: ``async with asyncio.timeout(t)``
around the request; a connection abandoned mid-answer is closed, never reused.

Errors are :class:`HttpError`: ``unreachable`` when no answer began (connect refused, reset or
timed out at the TCP or TLS level, or the connection closed before the status line and headers):
for Beacon's worker an outage, to be waited out. A status, whatever it is, is an answer.

Stale connections: the server closes idle keep-alive connections (uvicorn after 5 s); one seen
closed when taken from the pool is skipped. If it closes in the instant between, the request fails
before any byte of an answer, and only then it is sent once more on a new connection. A request
that received any byte of an answer is never sent again. That resend relies on the server having
dropped the request unanswered when it closed the connection (what an idle-closing server does);
Beacon's processing endpoints are idempotent by message id besides, so even a request the API did
process is answered the same the second time. A request that must not be repeated blindly (a send to a
channel's API, which is not idempotent) is made with ``resend=False``: that case is then an
``HttpError`` (``unreachable``) like any other connection lost before an answer, for the caller to judge.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import deque
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import cast
from urllib.parse import urlsplit

import httptools

from beacon.errors import BeaconError

#: Body bytes a connection holds unread before it stops reading its socket (until the caller reads).
READ_BUFFER_HIGH = 1 << 20
DEFAULT_PORTS = {"http": 80, "https": 443}


def trusting(ca_file: Path | None) -> ssl.SSLContext | None:
    """A TLS context trusting the certificate authorities in ``ca_file`` (PEM), or None for the system's trust
    store (what every client here uses by default)."""
    return None if ca_file is None else ssl.create_default_context(cafile=str(ca_file))


class HttpError(BeaconError):
    """An HTTP request got no complete answer. ``unreachable``: none began (the server is not there)."""

    retryable = True

    def __init__(self, text: str, *, unreachable: bool) -> None:
        super().__init__(text)
        self.unreachable = unreachable


class _Stale(Exception):
    """The connection closed before any byte of the answer arrived (the request may be sent again).
    ``written``: whether the request had been written to it (else it certainly never left)."""

    def __init__(self, *, written: bool) -> None:
        super().__init__()
        self.written = written


class _Connection(asyncio.Protocol):
    """One keep-alive connection and the state of the answer it is receiving (one request at a time)."""

    def __init__(self, pool: HttpPool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.lost: BaseException | None = None
        self.reused = False
        self.busy = False
        self.idle_since = 0.0
        self.waiter: asyncio.Future[None] | None = None
        self.paused = False
        self._start_answer()

    def _start_answer(self) -> None:
        self.received = False
        self.raw_headers: list[tuple[bytes, bytes]] = []
        self.status = 0
        self.headers_done = False
        self.complete = False
        self.keep_alive = False
        self.chunks: deque[bytes] = deque()
        self.buffered = 0
        self.failure: HttpError | None = None
        if self.paused and self.transport is not None:  # the last answer's unread rest is dropped
            self.paused = False
            self.transport.resume_reading()

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not asyncio.Transport's kin

    def data_received(self, data: bytes) -> None:
        if not self.busy:  # bytes nobody asked for: the connection is out of step, never reuse it
            self.close()
            return
        self.received = True
        try:
            self.parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
            self.failure = HttpError(f"{self.pool.origin} answered with malformed HTTP: {exc}", unreachable=False)
            self.close()
        self._wake()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.lost = exc
        if self.busy and self.headers_done and not self.complete and self.failure is None and not any(
                name.lower() in (b"content-length", b"transfer-encoding") for name, _ in self.raw_headers):
            self.complete = True  # a body without length ends with the connection
        self._wake()
        if not self.busy:
            self.pool._forget(self)

    def pause_writing(self) -> None:  # request bodies are small: the transport buffers them
        pass

    def resume_writing(self) -> None:
        pass

    # httptools callbacks

    def on_header(self, name: bytes, value: bytes) -> None:
        self.raw_headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        self.keep_alive = self.parser.should_keep_alive()
        self.headers_done = True

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)
        self.buffered += len(body)
        if self.buffered > READ_BUFFER_HIGH and not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()

    def on_message_complete(self) -> None:
        self.complete = True

    # used by the pool and the response

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            if not waiter.done():
                waiter.set_result(None)

    async def wait(self) -> None:
        """Until the connection has news (headers, body, the end, or its loss)."""
        self.waiter = waiter = asyncio.get_running_loop().create_future()
        await waiter

    def taken(self, size: int) -> None:
        """The caller took ``size`` buffered body bytes: read the socket again if it was paused."""
        self.buffered -= size
        if self.paused and self.buffered <= READ_BUFFER_HIGH // 2 and self.transport is not None:
            self.paused = False
            self.transport.resume_reading()

    async def send(self, data: bytes) -> None:
        """Write a request and wait for the answer's status and headers; raises _Stale or HttpError."""
        if self.closed or self.transport is None or self.transport.is_closing():
            raise _Stale(written=False)
        self._start_answer()
        self.busy = True
        self.transport.write(data)
        while not self.headers_done:
            self.raise_if_broken()
            await self.wait()

    def raise_if_broken(self) -> None:
        """Raise why the answer cannot go on, if it cannot."""
        if self.failure is not None:
            raise self.failure
        if self.closed:
            if not self.received:
                raise _Stale(written=True)
            where = "in the middle of the answer" if self.headers_done else "before the answer's headers"
            cause = f": {self.lost}" if self.lost else ""
            raise HttpError(f"{self.pool.origin} closed the connection {where}{cause}",
                            unreachable=not self.headers_done)

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()
        self.closed = True


class HttpResponse:
    """One request, sent on entering ``async with``; then its status, headers and body."""

    def __init__(self, pool: HttpPool, data: bytes, resend: bool) -> None:
        self._pool = pool
        self._data = data
        self._resend = resend
        self._conn: _Connection | None = None
        self.status = 0
        self._raw_headers: list[tuple[bytes, bytes]] = []

    async def __aenter__(self) -> HttpResponse:
        self._conn = conn = await self._pool._acquire()
        try:
            try:
                await conn.send(self._data)
            except _Stale as stale:
                if not conn.reused or (stale.written and not self._resend):
                    raise
                # Closed while idle, just before this request: once more on a new connection (see the module doc).
                self._conn = conn = await self._pool._reconnect(conn)
                await conn.send(self._data)
        except _Stale:
            self._release()
            raise HttpError(f"{self._pool.origin} closed the connection before answering", unreachable=True) from None
        except BaseException:
            self._release()
            raise
        self.status = conn.status
        self._raw_headers = conn.raw_headers
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._release()

    def _release(self) -> None:
        """Back to the pool if the answer ended and the server keeps the connection, else closed."""
        conn = self._conn
        if conn is None:
            return
        self._conn = None
        conn.busy = False
        if conn.complete and conn.keep_alive and not conn.closed:
            self._pool._release(conn)
        else:
            self._pool._discard(conn)

    def header(self, name: str) -> str | None:
        """The value of the answer's header ``name`` (case-insensitive; the first one), or None."""
        key = name.lower().encode("latin-1")
        for raw_name, value in self._raw_headers:
            if raw_name.lower() == key:
                return value.decode("latin-1")
        return None

    def _connection(self) -> _Connection:
        if self._conn is None:
            raise RuntimeError("the response is read inside its `async with` block")
        return self._conn

    async def read(self) -> bytes:
        """The whole body."""
        conn = self._connection()
        parts: list[bytes] = []
        while True:
            if conn.chunks:
                size = sum(len(c) for c in conn.chunks)
                parts.extend(conn.chunks)
                conn.chunks.clear()
                conn.taken(size)
            if conn.complete:
                return parts[0] if len(parts) == 1 else b"".join(parts)
            conn.raise_if_broken()
            await conn.wait()

    async def lines(self) -> AsyncIterator[bytes]:
        """The body line by line (without the newline) as each arrives; a last unterminated line too."""
        conn = self._connection()
        pending = b""
        while True:
            while conn.chunks:
                chunk = conn.chunks.popleft()
                conn.taken(len(chunk))
                if b"\n" in chunk:
                    *done, pending = (pending + chunk).split(b"\n")
                    for line in done:
                        yield line
                else:
                    pending += chunk
            if conn.complete:
                break
            conn.raise_if_broken()
            await conn.wait()
        if pending:
            yield pending


class HttpPool:
    """Keep-alive HTTP/1.1 connections to one origin (``base_url``, whose path prefixes every request)."""

    def __init__(self, base_url: str, *, limit: int = 100, keepalive: float = 30.0,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
            raise ValueError(f"{base_url!r} is not an http:// or https:// URL with a host")
        self.origin = f"{parts.scheme}://{parts.netloc}"
        self._host = parts.hostname
        self._port = parts.port or DEFAULT_PORTS[parts.scheme]
        self._host_header = parts.netloc.rpartition("@")[2]
        self._prefix = parts.path.rstrip("/")
        self._ssl = (ssl_context or ssl.create_default_context()) if parts.scheme == "https" else None
        self._limit = max(1, limit)
        self._keepalive = keepalive
        self._idle: list[_Connection] = []
        self._all: set[_Connection] = set()
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._closed = False

    def request(self, method: str, path: str, headers: Mapping[str, str] | None = None,
                body: bytes = b"", *, resend: bool = True) -> HttpResponse:
        """``async with pool.request("POST", "/v1/x", {...}, body) as resp:`` then ``resp.status``,
        ``await resp.read()`` or ``async for line in resp.lines()``. Header values must not hold CR or LF.
        ``resend=False``: never send it a second time once it was written, even when a reused connection
        closed before any byte of the answer (see the module doc); the caller gets that as an unreachable
        ``HttpError``. (One found closed before it was written still goes on a new connection: it never left.)"""
        head = f"{method} {self._prefix}{path} HTTP/1.1\r\nHost: {self._host_header}\r\n"
        if body or method != "GET":
            head += f"Content-Length: {len(body)}\r\n"
        if headers:
            for name, value in headers.items():
                if "\n" in value or "\r" in value:
                    raise ValueError(f"the value of header {name!r} holds a line break")
                head += f"{name}: {value}\r\n"
        return HttpResponse(self, (head + "\r\n").encode("latin-1") + body, resend)

    @property
    def connections(self) -> int:
        """Connections open now (idle and in use)."""
        return len(self._all)

    async def _acquire(self) -> _Connection:
        while True:
            if self._closed:
                raise HttpError(f"the HTTP pool of {self.origin} is closed", unreachable=True)
            now = time.monotonic()
            while self._idle:
                conn = self._idle.pop()
                if conn.closed or now - conn.idle_since > self._keepalive:
                    self._discard(conn)
                    continue
                conn.reused = True
                return conn
            if len(self._all) < self._limit:
                return await self._connect()
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except BaseException:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
                elif not waiter.cancelled():
                    self._wake_one()  # woken but leaving: pass the turn on
                raise

    async def _connect(self) -> _Connection:
        if self._closed:
            raise HttpError(f"the HTTP pool of {self.origin} is closed", unreachable=True)
        conn = _Connection(self)
        self._all.add(conn)  # holds its place in the limit while connecting
        try:
            await asyncio.get_running_loop().create_connection(
                lambda: conn, self._host, self._port, ssl=self._ssl,
                server_hostname=self._host if self._ssl is not None else None)
        except OSError as exc:
            self._discard(conn)
            raise HttpError(f"cannot connect to {self.origin}: {exc or type(exc).__name__}",
                            unreachable=True) from exc
        except BaseException:
            self._discard(conn)
            raise
        return conn

    async def _reconnect(self, stale: _Connection) -> _Connection:
        """A new connection in place of ``stale`` (closed)."""
        self._discard(stale)
        return await self._connect()

    def _release(self, conn: _Connection) -> None:
        if self._closed:
            self._discard(conn)
            return
        conn.idle_since = time.monotonic()
        self._idle.append(conn)
        self._wake_one()

    def _discard(self, conn: _Connection) -> None:
        conn.close()
        if conn in self._all:
            self._all.discard(conn)
            self._wake_one()

    def _forget(self, conn: _Connection) -> None:
        """An idle connection closed by the server: out of the pool."""
        if conn in self._idle:
            self._idle.remove(conn)
        self._discard(conn)

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    async def close(self) -> None:
        """Close every connection (answers in progress fail) and refuse new requests."""
        self._closed = True
        for conn in list(self._all):
            self._discard(conn)
        self._idle.clear()
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._waiters.clear()
