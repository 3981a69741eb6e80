"""The processes of the bare topology, one role each: ``python -m beacon.bench.bare ROLE [options]``.

- ``ingress``: ``POST /webhooks/whatsapp`` produces the raw body to the inbound topic, answers 200 on the ack.
- ``api``: ``POST /process`` ``{"text"}`` answers ``{"text": "You said: <text>"}``.
- ``worker``: consumes the inbound topic, calls the API once per message, produces the answer.
- ``egress``: consumes the outbound topic, POSTs each answer to the channel.
- ``channel``: ``POST /messages`` records the arrival time; ``GET /_fake/sent`` and ``/_fake/stats`` read the
  record like the fake Cloud API's, so the bench follows both the same way.

Consumers write how many partitions they hold to ``<ready dir>/<name>.assigned``, so the topology knows when
the group has settled before it measures.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiohttp import web
from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition

from beacon.config import get_settings
from beacon.gateway.base import run_fast
from beacon.kafka import fetch_batch, make_consumer, make_producer

#: Messages a consumer process works on at once (like the worker's default in-flight bound).
IN_FLIGHT = 1000
#: Connections a process opens to the HTTP endpoint it calls.
CONNECTIONS = 256


class AckingProducer:
    """A confluent-kafka producer whose deliveries are served by a thread; ``send`` waits for the ack."""

    def __init__(self) -> None:
        self.producer: Producer = make_producer(get_settings())
        self._running = True
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while self._running:
            self.producer.poll(0.5)

    async def send(self, topic: str, value: bytes) -> None:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()

        def settle(err: KafkaError | None) -> None:
            if done.done():
                return
            if err is None:
                done.set_result(None)
            else:
                done.set_exception(RuntimeError(f"produce to {topic} failed: {err}"))

        def delivered(err: KafkaError | None, _msg: Message) -> None:
            loop.call_soon_threadsafe(settle, err)

        self.producer.produce(topic, value, on_delivery=delivered)
        await done

    def close(self) -> None:
        self._running = False
        self._thread.join(5)
        self.producer.flush(10)


def _consumer(group: str, topic: str, ready_file: Path) -> Consumer:
    """An auto-committing consumer that records how many partitions it holds (eager rebalancing)."""
    consumer = make_consumer(get_settings(), group, **{"enable.auto.commit": True, "enable.auto.offset.store": True,
                                                      "partition.assignment.strategy": "roundrobin"})

    def assigned(_c: Consumer, partitions: list[TopicPartition]) -> None:
        ready_file.write_text(str(len(partitions)))

    def revoked(_c: Consumer, _partitions: list[TopicPartition]) -> None:
        ready_file.write_text("0")

    consumer.subscribe([topic], on_assign=assigned, on_revoke=revoked)
    return consumer


async def _consume(consumer: Consumer, handle: Callable[[bytes], Awaitable[None]]) -> None:
    """Hand every record to ``handle`` as its own task, at most IN_FLIGHT at once, in no particular order."""
    slots = asyncio.Semaphore(IN_FLIGHT)
    tasks: set[asyncio.Task[None]] = set()

    async def one(value: bytes) -> None:
        try:
            await handle(value)
        finally:
            slots.release()

    while True:
        for msg in await asyncio.to_thread(fetch_batch, consumer, 500, 0.5):
            value = msg.value()
            if msg.error() is not None or value is None:
                continue
            await slots.acquire()
            task = asyncio.create_task(one(value))
            tasks.add(task)
            task.add_done_callback(tasks.discard)


async def _healthz(_request: web.Request) -> web.Response:
    return await _ok({"status": "ok"})


async def _serve(app: web.Application, port: int) -> None:
    app.router.add_get("/healthz", _healthz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    await asyncio.Event().wait()


async def _ok(data: Any) -> web.Response:
    return web.Response(body=orjson.dumps(data), content_type="application/json")


async def ingress(port: int, topic: str) -> None:
    producer = AckingProducer()

    async def webhook(request: web.Request) -> web.Response:
        await producer.send(topic, await request.read())
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/webhooks/whatsapp", webhook)
    await _serve(app, port)


async def api(port: int) -> None:
    async def process(request: web.Request) -> web.Response:
        text = orjson.loads(await request.read())["text"]
        return await _ok({"text": f"You said: {text}"})

    app = web.Application()
    app.router.add_post("/process", process)
    await _serve(app, port)


async def worker(topic_in: str, topic_out: str, api_url: str, group: str, ready_file: Path) -> None:
    producer = AckingProducer()
    consumer = _consumer(group, topic_in, ready_file)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=CONNECTIONS)) as http:

        async def handle(value: bytes) -> None:
            message = orjson.loads(value)["entry"][0]["changes"][0]["value"]["messages"][0]
            async with http.post(f"{api_url}/process", data=orjson.dumps({"text": message["text"]["body"]}),
                                 headers={"Content-Type": "application/json"}) as response:
                answer = orjson.loads(await response.read())
            await producer.send(topic_out, orjson.dumps({"to": message["from"], "text": answer["text"]}))

        await _consume(consumer, handle)


async def egress(topic_out: str, channel_url: str, group: str, ready_file: Path) -> None:
    consumer = _consumer(group, topic_out, ready_file)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=CONNECTIONS)) as http:

        async def handle(value: bytes) -> None:
            answer = orjson.loads(value)
            body = {"messaging_product": "whatsapp", "to": answer["to"], "type": "text",
                    "text": {"body": answer["text"]}}
            async with http.post(f"{channel_url}/messages", data=orjson.dumps(body),
                                 headers={"Content-Type": "application/json"}) as response:
                await response.read()

        await _consume(consumer, handle)


async def channel(port: int) -> None:
    sent: list[dict[str, Any]] = []
    changed = asyncio.Event()

    async def receive(request: web.Request) -> web.Response:
        received_at = time.time()
        sent.append({"seq": len(sent) + 1, "received_at": received_at, "body": orjson.loads(await request.read())})
        changed.set()
        changed.clear()
        return await _ok({"messages": [{"id": f"bare.{len(sent)}"}]})

    async def list_sent(request: web.Request) -> web.Response:
        after = int(request.query.get("after", "0"))
        deadline = time.monotonic() + float(request.query.get("wait", "0"))
        while len(sent) <= after and (remaining := deadline - time.monotonic()) > 0:
            try:
                await asyncio.wait_for(changed.wait(), remaining)
            except TimeoutError:
                break
        return await _ok(sent[max(after, 0):])

    async def stats(_request: web.Request) -> web.Response:
        return await _ok({"last_seq": len(sent)})

    app = web.Application()
    app.router.add_post("/messages", receive)
    app.router.add_get("/_fake/sent", list_sent)
    app.router.add_get("/_fake/stats", stats)
    await _serve(app, port)


def _exit_with_parent(parent: int) -> None:
    """Exit when the bench that started this process (pid ``parent``) is gone, killed before it could stop its
    children: this process is then re-parented, possibly even before it got here."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m beacon.bench.bare")
    parser.add_argument("role", choices=["ingress", "api", "worker", "egress", "channel"])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--topic-in", default="")
    parser.add_argument("--topic-out", default="")
    parser.add_argument("--url", default="", help="the API (worker) or the channel (egress)")
    parser.add_argument("--group", default="")
    parser.add_argument("--ready-file", type=Path, default=Path("ready"))
    parser.add_argument("--parent", type=int, default=0, help="exit when this process (the bench) is gone")
    a = parser.parse_args(argv)
    roles: dict[str, Callable[[], Awaitable[None]]] = {
        "ingress": lambda: ingress(a.port, a.topic_in),
        "api": lambda: api(a.port),
        "worker": lambda: worker(a.topic_in, a.topic_out, a.url, a.group, a.ready_file),
        "egress": lambda: egress(a.topic_out, a.url, a.group, a.ready_file),
        "channel": lambda: channel(a.port),
    }

    if a.parent:
        _exit_with_parent(a.parent)

    async def run() -> None:
        await roles[a.role]()

    run_fast(run())
