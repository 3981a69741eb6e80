"""``beacon bench gateway --channel telegram``: one Telegram gateway process, inbound and outbound, against
the same baselines as WhatsApp's (``beacon.bench.gateway``), measured in the same run on the same broker.

Inbound: Updates with the secret header POSTed/s and accepted (200 after the broker's ack), and the
p50/p99 time to the 200 at a paced rate, vs raw produce+ack. Outbound: sendMessage calls/s from bm_out to
the fake Bot API with the limiters off, vs raw HTTP calls from this process to the fake.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp
import orjson

from beacon.bench.gateway import Figures, _paced, _raw_produce, _wait_healthy, _webhooks
from beacon.codec import MessageCodec
from beacon.config import Settings
from beacon.errors import BeaconError
from beacon.fakes.telegram import updates as u
from beacon.fakes.telegram.server import DEV_TOKEN, FakeBotApi, running
from beacon.gateway.telegram.auth import HEADER
from beacon.kafka import AsyncProducer, KafkaException, TopicSpec, ensure_topics, make_admin
from beacon.messages import BeaconMessage
from beacon.ops.process import free_port

SECRET = "bench-telegram-secret"
BOT = DEV_TOKEN.partition(":")[0]


def _bodies(count: int, users: int) -> list[tuple[bytes, str]]:
    return [(orjson.dumps(u.text_update(10_000 + i, 500_000 + i % users, i + 1, f"bench message {i} café")), SECRET)
            for i in range(count)]


async def _raw_http(fake_url: str, seconds: float, concurrency: int) -> float:
    done = 0
    url = f"{fake_url}/bot{DEV_TOKEN}/sendMessage"
    deadline = time.perf_counter() + seconds
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:

        async def worker() -> None:
            nonlocal done
            while time.perf_counter() < deadline:
                async with session.post(url, json={"chat_id": 500_000, "text": "hi"}) as r:
                    await r.read()
                    done += 1

        started = time.perf_counter()
        await asyncio.gather(*[worker() for _ in range(concurrency)])
        took = time.perf_counter() - started
    return done / took


async def _sends(settings: Settings, fake: FakeBotApi, topic: str, count: int, users: int) -> float:
    codec = MessageCodec(settings)
    codec.prepare([topic])
    producer = AsyncProducer(settings, **{"linger.ms": 20})
    first = len(fake.calls("sendMessage"))
    msgs = [BeaconMessage.inbound_text(channel="telegram", account=BOT, user_id=str(600_000 + i % users), text="x",
                                       channel_message_id=f"bench-{uuid.uuid4().hex}").reply_text(f"reply {i}")
            for i in range(count)]
    await asyncio.gather(*[producer.produce(topic, codec.encode(m, topic), key=m.user_key.encode()) for m in msgs])
    await asyncio.to_thread(producer.close)
    deadline = time.monotonic() + max(60.0, count / 100)
    while len(sent := fake.calls("sendMessage")) - first < count:
        if time.monotonic() > deadline:
            raise BeaconError(f"only {len(sent) - first} of {count} sends arrived at the fake Bot API")
        await asyncio.sleep(0.05)
    stamps = [float(c["at"]) for c in sent[first:]]
    return count / max(max(stamps) - min(stamps), 1e-6)


def _start_gateway(settings: Settings, topics: dict[str, str], port: int, api_url: str, data_dir: Path,
                   log: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    env.update({
        "BEACON_KAFKA_BOOTSTRAP": settings.kafka_bootstrap, "BEACON_SCHEMA_REGISTRY_URL": settings.schema_registry_url,
        "BEACON_DATA_DIR": str(data_dir), "BEACON_TOPIC_IN": topics["in"], "BEACON_TOPIC_OUT": topics["out"],
        "BEACON_TOPIC_DLQ": topics["dlq"], "BEACON_TELEGRAM_GATEWAY_GROUP": f"bench-tg-{uuid.uuid4().hex[:8]}",
        "BEACON_TELEGRAM_PORT": str(port), "BEACON_TELEGRAM_HOST": "127.0.0.1", "BEACON_TELEGRAM_API_URL": api_url,
        "BEACON_TELEGRAM_BOT_TOKEN": DEV_TOKEN, "BEACON_TELEGRAM_WEBHOOK_SECRET": SECRET,
        "BEACON_TELEGRAM_RATE_LIMIT": "0", "BEACON_TELEGRAM_CHAT_RATE": "0", "BEACON_LOG_LEVEL": "WARNING",
    })
    return subprocess.Popen([sys.executable, "-m", "beacon", "gateway", "telegram"], env=env, cwd=data_dir,
                            stdout=log.open("wb"), stderr=subprocess.STDOUT)


async def bench(settings: Settings, *, seconds: float, concurrency: int, paced_rate: float, sends: int,
                users: int) -> Figures:
    """Run every measurement; topics and the gateway process are cleaned up afterwards."""
    figures = Figures(paced_rate=paced_rate)
    run = uuid.uuid4().hex[:8]
    topics = {"in": f"bench_tg_{run}_in", "out": f"bench_tg_{run}_out", "dlq": f"bench_tg_{run}_dlq"}
    ensure_topics(settings, [TopicSpec(t, settings.topic_partitions, settings.topic_replication_factor, {})
                             for t in topics.values()])
    bodies = _bodies(20000, users)
    port = free_port()
    fake = FakeBotApi(token=DEV_TOKEN, default_webhook="")  # the bench posts the Updates itself
    try:
        with tempfile.TemporaryDirectory(prefix="beacon-bench-tg-") as tmp:
            data_dir = Path(tmp)
            log = data_dir / "gateway.log"
            async with running(fake) as fake_url:
                proc = _start_gateway(settings, topics, port, fake_url, data_dir, log)
                try:
                    await _wait_healthy(port, proc, log)
                    url = f"http://127.0.0.1:{port}/webhooks/telegram"
                    await _webhooks(url, bodies, 1.0, concurrency, HEADER)  # warm-up: connections, schema ids
                    figures.raw_produce = await _raw_produce(settings, topics["in"], seconds, concurrency)
                    figures.webhooks, figures.webhook_errors = await _webhooks(url, bodies, seconds, concurrency,
                                                                               HEADER)
                    latencies = await _paced(url, bodies, paced_rate, seconds, HEADER)
                    if latencies:
                        figures.p50_ms = latencies[len(latencies) // 2] * 1000
                        figures.p99_ms = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000
                    figures.raw_http = await _raw_http(fake_url, min(seconds, 3.0), 64)
                    figures.sends = await _sends(settings, fake, topics["out"], sends, users)
                finally:
                    proc.send_signal(signal.SIGTERM)
                    try:
                        proc.wait(30)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        figures.notes.append("the gateway did not stop within 30s of SIGTERM")
    finally:
        admin = make_admin(settings)
        for fut in admin.delete_topics(list(topics.values()), operation_timeout=10).values():
            try:
                fut.result(timeout=15)
            except KafkaException as exc:
                figures.notes.append(f"could not delete a bench topic: {exc}")
    return figures
