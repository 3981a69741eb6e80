"""The keep-alive HTTP/1.1 client against real servers on free ports (aiohttp.web, and raw asyncio servers
that misbehave on purpose): bodies by length, chunked and until close, lines as they arrive, reuse,
stale connections (resent once, or never for a request made with ``resend=False``), refusals, hangs and TLS."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest
import uvloop
from aiohttp import web

from beacon.http_pool import HttpError, HttpPool
from beacon.ops import kafka_tls
from beacon.ops.process import free_port
from tests.conftest import make_settings

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
Run = Callable[[Coroutine[Any, Any, None]], None]


@pytest.fixture(params=["asyncio", "uvloop"])
def run(request: pytest.FixtureRequest) -> Run:
    """Runs a test's scenario on a fresh loop of each kind: the worker runs on uvloop, whose transports differ."""
    factory = uvloop.new_event_loop if request.param == "uvloop" else asyncio.new_event_loop

    def run_on_loop(scenario: Coroutine[Any, Any, None]) -> None:
        with asyncio.Runner(loop_factory=factory) as runner:
            runner.run(scenario)

    return run_on_loop


class Peers:
    """What an aiohttp.web test server saw: the client end of each request's connection."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, int]] = []

    def note(self, request: web.Request) -> None:
        assert request.transport is not None
        self.seen.append(request.transport.get_extra_info("peername"))


async def serve(app: web.Application, *, keepalive: float = 75.0,
                ssl_context: ssl.SSLContext | None = None) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(app, keepalive_timeout=keepalive)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=ssl_context).start()
    return runner, port


class RawServers:
    """``async with RawServers() as start:`` starts asyncio servers running a given connection handler
    (``await start(handler)`` -> port); closes them and their connections at the end."""

    def __init__(self) -> None:
        self.servers: list[asyncio.Server] = []
        self.writers: list[asyncio.StreamWriter] = []

    async def __aenter__(self) -> Callable[[Handler], Awaitable[int]]:
        return self.start

    async def start(self, handler: Handler) -> int:
        async def tracked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.writers.append(writer)
            await handler(reader, writer)

        port = free_port()
        self.servers.append(await asyncio.start_server(tracked, "127.0.0.1", port))
        return port

    async def __aexit__(self, *exc_info: object) -> None:
        for writer in self.writers:
            writer.close()
        for server in self.servers:
            server.close()
            await server.wait_closed()


def ok(body: bytes, extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%b\r\n%b" % (len(body), extra, body)


def test_bodies_by_content_length_and_chunked_are_read_whole(run: Run) -> None:
    async def scenario() -> None:
        async def fixed(request: web.Request) -> web.Response:
            return web.Response(body=b"x" * 70_000 + await request.read(), headers={"Server-Timing": "db;dur=1.5"})

        async def chunked(request: web.Request) -> web.StreamResponse:
            resp = web.StreamResponse()
            resp.enable_chunked_encoding()
            await resp.prepare(request)
            for i in range(5):
                await resp.write(b"part%d," % i)
            await resp.write_eof()
            return resp

        app = web.Application()
        app.router.add_post("/fixed", fixed)
        app.router.add_get("/chunked", chunked)
        runner, port = await serve(app)
        pool = HttpPool(f"http://127.0.0.1:{port}")
        try:
            async with pool.request("POST", "/fixed", {"X-A": "1"}, b"tail") as resp:
                assert resp.status == 200
                assert resp.header("server-timing") == "db;dur=1.5"
                assert await resp.read() == b"x" * 70_000 + b"tail"
            async with pool.request("GET", "/chunked") as resp:
                assert resp.header("Transfer-Encoding") == "chunked"
                assert await resp.read() == b"part0,part1,part2,part3,part4,"
        finally:
            await pool.close()
            await runner.cleanup()

    run(scenario())


def test_a_body_without_length_ends_with_the_connection(run: Run) -> None:
    async def scenario() -> None:
        async with RawServers() as raw_server:
            async def until_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
                await reader.readuntil(b"\r\n\r\n")
                writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nall of it")
                await writer.drain()
                writer.close()

            pool = HttpPool(f"http://127.0.0.1:{await raw_server(until_close)}")
            try:
                async with asyncio.timeout(10), pool.request("GET", "/") as resp:
                    assert await resp.read() == b"all of it"
                assert pool.connections == 0  # not kept: it is closed
            finally:
                await pool.close()

    run(scenario())


def test_lines_arrive_while_the_body_is_still_being_written(run: Run) -> None:
    async def scenario() -> None:
        first_seen = asyncio.Event()

        async def ndjson(request: web.Request) -> web.StreamResponse:
            resp = web.StreamResponse()
            await resp.prepare(request)
            await resp.write(b'{"i": 0}\n{"i"')
            await first_seen.wait()  # the rest only once the client has the first line
            await resp.write(b': 1}\n{"i": 2}')
            await resp.write_eof()
            return resp

        app = web.Application()
        app.router.add_post("/batch", ndjson)
        runner, port = await serve(app)
        pool = HttpPool(f"http://127.0.0.1:{port}")
        lines = []
        try:
            async with asyncio.timeout(10), pool.request("POST", "/batch", body=b"[]") as resp:
                async for line in resp.lines():
                    lines.append(line)
                    first_seen.set()
        finally:
            await pool.close()
            await runner.cleanup()
        assert lines == [b'{"i": 0}', b'{"i": 1}', b'{"i": 2}']

    run(scenario())


def test_sequential_requests_share_one_connection_and_connection_close_is_honoured(run: Run) -> None:
    async def scenario() -> None:
        peers = Peers()

        async def hello(request: web.Request) -> web.Response:
            peers.note(request)
            close = request.query.get("close") == "1"
            return web.Response(text="hi", headers={"Connection": "close"} if close else {})

        app = web.Application()
        app.router.add_get("/", hello)
        runner, port = await serve(app)
        pool = HttpPool(f"http://127.0.0.1:{port}")
        try:
            for _ in range(20):
                async with pool.request("GET", "/") as resp:
                    assert await resp.read() == b"hi"
            assert len(peers.seen) == 20 and len(set(peers.seen)) == 1
            assert pool.connections == 1

            async with pool.request("GET", "/?close=1") as resp:
                assert await resp.read() == b"hi"
            assert pool.connections == 0
            async with pool.request("GET", "/") as resp:
                assert await resp.read() == b"hi"
            assert len(set(peers.seen)) == 2  # the server said close: the next request went on a new connection
        finally:
            await pool.close()
            await runner.cleanup()

    run(scenario())


def test_a_connection_the_server_closed_while_idle_is_not_used_again(run: Run) -> None:
    async def scenario() -> None:
        peers = Peers()

        async def hello(request: web.Request) -> web.Response:
            peers.note(request)
            return web.Response(text="hi")

        app = web.Application()
        app.router.add_get("/", hello)
        runner, port = await serve(app, keepalive=0.2)
        pool = HttpPool(f"http://127.0.0.1:{port}")
        try:
            async with pool.request("GET", "/") as resp:
                assert await resp.read() == b"hi"
            async with asyncio.timeout(10):
                while pool.connections:  # the server closes it after 0.2 s idle
                    await asyncio.sleep(0.05)
            async with asyncio.timeout(10), pool.request("GET", "/") as resp:
                assert await resp.read() == b"hi"
            assert len(set(peers.seen)) == 2
        finally:
            await pool.close()
            await runner.cleanup()

    run(scenario())


def test_a_request_dropped_unanswered_on_a_reused_connection_is_sent_once_more_on_a_new_one(run: Run) -> None:
    async def scenario() -> None:
        async with RawServers() as raw_server:
            received: list[bytes] = []

            async def answers_one_per_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
                for n in range(2):
                    head = await reader.readuntil(b"\r\n\r\n")
                    received.append(head.split(b" ")[1])
                    if n == 1:  # the second request on a connection: dropped unanswered (an idle close racing it)
                        writer.close()
                        return
                    writer.write(ok(b"answer to " + head.split(b" ")[1]))
                    await writer.drain()

            pool = HttpPool(f"http://127.0.0.1:{await raw_server(answers_one_per_connection)}")
            try:
                async with asyncio.timeout(10):
                    async with pool.request("GET", "/a") as resp:
                        assert await resp.read() == b"answer to /a"
                    async with pool.request("GET", "/b") as resp:
                        assert await resp.read() == b"answer to /b"
            finally:
                await pool.close()
            assert received == [b"/a", b"/b", b"/b"]

    run(scenario())


def test_a_request_made_with_resend_off_and_dropped_unanswered_on_a_reused_connection_is_not_sent_again(
        run: Run) -> None:
    async def scenario() -> None:
        async with RawServers() as raw_server:
            received: list[bytes] = []

            async def answers_one_per_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
                for n in range(2):
                    head = await reader.readuntil(b"\r\n\r\n")
                    received.append(head.split(b" ")[1])
                    if n == 1:  # the second request on a connection: dropped unanswered
                        writer.close()
                        return
                    writer.write(ok(b"answer to " + head.split(b" ")[1]))
                    await writer.drain()

            pool = HttpPool(f"http://127.0.0.1:{await raw_server(answers_one_per_connection)}")
            try:
                async with asyncio.timeout(10):
                    async with pool.request("POST", "/a", body=b"{}", resend=False) as resp:
                        assert await resp.read() == b"answer to /a"
                    with pytest.raises(HttpError) as raised:
                        async with pool.request("POST", "/b", body=b"{}", resend=False):
                            pass
                    async with pool.request("POST", "/c", body=b"{}", resend=False) as resp:  # the pool goes on
                        assert await resp.read() == b"answer to /c"
            finally:
                await pool.close()
            assert raised.value.unreachable and "closed the connection before answering" in str(raised.value)
            assert received == [b"/a", b"/b", b"/c"]  # /b once: whether it was taken is the caller's to judge

    run(scenario())


def test_a_request_that_got_part_of_an_answer_is_never_sent_again(run: Run) -> None:
    async def scenario() -> None:
        async with RawServers() as raw_server:
            received: list[bytes] = []

            async def half_answers(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
                head = await reader.readuntil(b"\r\n\r\n")
                received.append(head.split(b" ")[1])
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly some")
                await writer.drain()
                writer.close()

            pool = HttpPool(f"http://127.0.0.1:{await raw_server(half_answers)}")
            try:
                with pytest.raises(HttpError) as raised:
                    async with asyncio.timeout(10), pool.request("POST", "/once", body=b"{}") as resp:
                        await resp.read()
            finally:
                await pool.close()
            assert not raised.value.unreachable  # it answered, then broke off: not an outage by itself
            assert "in the middle of the answer" in str(raised.value)
            assert received == [b"/once"]

    run(scenario())


def test_a_refused_connection_is_unreachable(run: Run) -> None:
    async def scenario() -> None:
        pool = HttpPool(f"http://127.0.0.1:{free_port()}")
        try:
            with pytest.raises(HttpError) as raised:
                async with asyncio.timeout(10), pool.request("GET", "/readyz"):
                    pass
        finally:
            await pool.close()
        assert raised.value.unreachable and raised.value.retryable
        assert "cannot connect to http://127.0.0.1:" in str(raised.value)

    run(scenario())


def test_a_server_that_accepts_and_never_answers_times_out_and_its_connection_is_dropped(run: Run) -> None:
    async def scenario() -> None:
        async with RawServers() as raw_server:
            async def hangs(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
                await reader.read()  # until the client goes

            pool = HttpPool(f"http://127.0.0.1:{await raw_server(hangs)}")
            try:
                with pytest.raises(TimeoutError):
                    async with asyncio.timeout(0.3), pool.request("GET", "/"):
                        pass
                assert pool.connections == 0
            finally:
                await pool.close()

    run(scenario())


def test_at_most_limit_connections_are_opened(run: Run) -> None:
    async def scenario() -> None:
        peers = Peers()
        inside = [0, 0]  # now, most

        async def slow(request: web.Request) -> web.Response:
            peers.note(request)
            inside[0] += 1
            inside[1] = max(inside)
            await asyncio.sleep(0.05)
            inside[0] -= 1
            return web.Response(text="ok")

        app = web.Application()
        app.router.add_get("/", slow)
        runner, port = await serve(app)
        pool = HttpPool(f"http://127.0.0.1:{port}", limit=2)

        async def get() -> bytes:
            async with pool.request("GET", "/") as resp:
                return await resp.read()

        try:
            async with asyncio.timeout(20):
                assert await asyncio.gather(*(get() for _ in range(8))) == [b"ok"] * 8
        finally:
            await pool.close()
            await runner.cleanup()
        assert len(set(peers.seen)) == 2 and inside[1] == 2

    run(scenario())


def test_https_with_a_certificate_of_a_private_authority(run: Run, tmp_path: Path) -> None:
    async def scenario() -> None:
        server_pem = kafka_tls.ensure_certificates(make_settings(data_dir=tmp_path))  # key and chain for 127.0.0.1
        server_ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        server_ssl.load_cert_chain(server_pem)

        async def hello(request: web.Request) -> web.Response:
            return web.Response(body=await request.read())

        app = web.Application()
        app.router.add_post("/", hello)
        runner, port = await serve(app, ssl_context=server_ssl)
        trusting = HttpPool(f"https://127.0.0.1:{port}",
                            ssl_context=ssl.create_default_context(cafile=kafka_tls.ca_file(make_settings(data_dir=tmp_path))))
        untrusting = HttpPool(f"https://127.0.0.1:{port}")  # the system's trust store: not our authority
        try:
            async with asyncio.timeout(10):
                for _ in range(3):
                    async with trusting.request("POST", "/", body=b"secret") as resp:
                        assert await resp.read() == b"secret"
                assert trusting.connections == 1
                with pytest.raises(HttpError) as raised:
                    async with untrusting.request("POST", "/", body=b"secret"):
                        pass
            assert raised.value.unreachable and "certificate verify failed" in str(raised.value)
        finally:
            await trusting.close()
            await untrusting.close()
            await runner.cleanup()

    run(scenario())
