"""``beacon bench gateway``: one channel's gateway process, inbound and outbound, against baselines
measured in the same run on the same broker. :func:`measure` runs it for any :class:`Channel`; this
module describes WhatsApp's (``WHATSAPP``), ``beacon.bench.telegram`` Telegram's.

Inbound: authenticated webhook POSTs/s accepted (200 after the broker's ack) at full speed, and the
p50/p99 time to the 200 at a paced rate (default 500/s), vs raw ``AsyncProducer`` produce+ack of
the same records. Outbound: sends/s from bm_out to the channel's fake API with the limiters off, vs
raw HTTP POSTs from this process straight to the fake. The fake runs in a process of its own (the
``beacon fake-<channel>`` command), so the raw-HTTP baseline and the gateway both reach it over real
HTTP, neither sharing its event loop. Uses fresh topics (deleted afterwards).

CPU: the gateway process's CPU time per message (from /proc) in the paced webhook run, the send burst, a
paced run of sends, and paced runs of another channel's replies on bm_out (which the gateway only skips),
with the ``beacon-channel`` header and without it (as producers before it wrote them). At a light rate
the figures include the gateway's idle cost (timers, polls), as a deployment at that rate pays it.
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
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from beacon.codec import MessageCodec
from beacon.config import Settings
from beacon.errors import BeaconError
from beacon.fakes.whatsapp import payloads as p
from beacon.gateway.whatsapp.parse import parse_webhook
from beacon.gateway.whatsapp.signature import HEADER, sign
from beacon.kafka import (
    AsyncProducer,
    KafkaException,
    TopicSpec,
    committed_offsets,
    ensure_topics,
    list_topic_offsets,
    make_admin,
    topic_partitions,
)
from beacon.messages import BeaconMessage
from beacon.ops.process import cpu_seconds, free_port
from beacon.routing import with_channel

SECRET = "bench-secret"
TOKEN = "bench-token"


@dataclass
class Figures:
    """Everything the benchmark measured."""

    raw_produce: float = 0.0
    webhooks: float = 0.0
    webhook_errors: int = 0
    paced_rate: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    raw_http: float = 0.0
    sends: float = 0.0
    #: The gateway process's CPU milliseconds per message (``beacon.ops.process.cpu_seconds``): per webhook of
    #: the paced run, per send of the burst and of a paced run, per record of another channel on bm_out
    #: (paced; with the ``beacon-channel`` header, and without it as older producers wrote them).
    cpu_webhook_ms: float = 0.0
    cpu_send_burst_ms: float = 0.0
    cpu_send_paced_ms: float = 0.0
    cpu_foreign_ms: float = 0.0
    cpu_foreign_undecorated_ms: float = 0.0
    notes: list[str] = field(default_factory=list)


def _bodies(count: int, users: int) -> list[tuple[bytes, str]]:
    out = []
    for i in range(count):
        body = p.encode(p.text_webhook(f"4477005{i % users:05d}", f"bench message {i} café"))
        out.append((body, sign(body, SECRET)))
    return out


async def _raw_produce(settings: Settings, topic: str, seconds: float, concurrency: int) -> float:
    codec = MessageCodec(settings)
    codec.prepare([topic])
    msgs = parse_webhook(_bodies(1, 1)[0][0])
    value = codec.encode(msgs[0], topic)
    producer = AsyncProducer(settings)
    done = 0
    deadline = time.perf_counter() + seconds

    async def worker(i: int) -> None:
        nonlocal done
        key = f"whatsapp:1:{i}".encode()
        while time.perf_counter() < deadline:
            await producer.produce(topic, value, key=key)
            done += 1

    started = time.perf_counter()
    await asyncio.gather(*[worker(i) for i in range(concurrency)])
    took = time.perf_counter() - started
    await asyncio.to_thread(producer.close)
    return done / took


async def _webhooks(url: str, bodies: list[tuple[bytes, str]], seconds: float, concurrency: int,
                    header: str = HEADER) -> tuple[float, int]:
    ok = errors = 0
    index = 0
    deadline = time.perf_counter() + seconds
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            nonlocal ok, errors, index
            while time.perf_counter() < deadline:
                body, sig = bodies[index % len(bodies)]
                index += 1
                async with session.post(url, data=body, headers={header: sig,
                                                                 "Content-Type": "application/json"}) as r:
                    await r.read()
                    if r.status == 200:
                        ok += 1
                    else:
                        errors += 1

        started = time.perf_counter()
        await asyncio.gather(*[worker() for _ in range(concurrency)])
        took = time.perf_counter() - started
    return ok / took, errors


async def _paced(url: str, bodies: list[tuple[bytes, str]], rate: float, seconds: float,
                 header: str = HEADER) -> list[float]:
    latencies: list[float] = []
    total = int(rate * seconds)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256)) as session:

        async def one(body: bytes, sig: str) -> None:
            t0 = time.perf_counter()
            async with session.post(url, data=body, headers={header: sig, "Content-Type": "application/json"}) as r:
                await r.read()
                if r.status == 200:
                    latencies.append(time.perf_counter() - t0)

        tasks = []
        started = time.perf_counter()
        for i in range(total):
            delay = started + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            body, sig = bodies[i % len(bodies)]
            tasks.append(asyncio.create_task(one(body, sig)))
        await asyncio.gather(*tasks)
    return sorted(latencies)


@dataclass(frozen=True)
class Channel:
    """What the gateway bench needs to know of one channel; :func:`measure` does the rest the same way for all."""

    name: str
    webhook_path: str
    #: The header that authenticates a webhook (a signature, or a shared secret).
    header: str
    #: (count, users) -> webhook bodies and their header values.
    bodies: Callable[[int, int], list[tuple[bytes, str]]]
    #: (gateway port, fake URL) -> the gateway's channel settings (limiters off).
    gateway_env: Callable[[int, str], dict[str, str]]
    #: Gateway port -> the fake's settings (the credentials it accepts).
    fake_env: Callable[[int], dict[str, str]]
    #: The fake's URL -> (URL, JSON body, headers) of one raw send.
    raw_send: Callable[[str], tuple[str, dict[str, Any], dict[str, str]]]
    #: (count, users) -> replies to put on bm_out.
    replies: Callable[[int, int], list[BeaconMessage]]
    #: The fake's record of sends: path and query, and the field holding each send's arrival time.
    record_path: str
    record_params: dict[str, str]
    record_stamp: str
    api: str = "Cloud API"


def _whatsapp_gateway_env(port: int, fake_url: str) -> dict[str, str]:
    return {"BEACON_WHATSAPP_GATEWAY_GROUP": f"bench-gw-{uuid.uuid4().hex[:8]}",
            "BEACON_WHATSAPP_GATEWAY_PORT": str(port), "BEACON_GATEWAY_HOST": "127.0.0.1",
            "BEACON_WHATSAPP_GRAPH_URL": fake_url, "BEACON_WHATSAPP_ACCESS_TOKEN": TOKEN,
            "BEACON_WHATSAPP_APP_SECRET": SECRET, "BEACON_WHATSAPP_RATE_LIMIT": "0", "BEACON_WHATSAPP_USER_RATE": "0"}


def _whatsapp_fake_env(gateway_port: int) -> dict[str, str]:
    return {"BEACON_WHATSAPP_ACCESS_TOKEN": TOKEN, "BEACON_WHATSAPP_APP_SECRET": SECRET,
            "BEACON_GATEWAY_URL": f"http://127.0.0.1:{gateway_port}"}


def _whatsapp_raw_send(fake_url: str) -> tuple[str, dict[str, Any], dict[str, str]]:
    body = {"messaging_product": "whatsapp", "to": "+447700900123", "type": "text", "text": {"body": "hi"}}
    return f"{fake_url}/v23.0/{p.DEFAULT_PHONE_NUMBER_ID}/messages", body, {"Authorization": f"Bearer {TOKEN}"}


def _whatsapp_replies(count: int, users: int) -> list[BeaconMessage]:
    return [BeaconMessage.inbound_text(channel="whatsapp", account=p.DEFAULT_PHONE_NUMBER_ID,
                                       user_id=f"4477006{i % users:05d}", text="x",
                                       channel_message_id=f"bench-{uuid.uuid4().hex}").reply_text(f"reply {i}")
            for i in range(count)]


WHATSAPP = Channel(name="whatsapp", webhook_path="/webhooks/whatsapp", header=HEADER, bodies=_bodies,
                   gateway_env=_whatsapp_gateway_env, fake_env=_whatsapp_fake_env, raw_send=_whatsapp_raw_send,
                   replies=_whatsapp_replies, record_path="/_fake/sent", record_params={},
                   record_stamp="received_at")


async def _raw_http(channel: Channel, fake_url: str, seconds: float, concurrency: int) -> float:
    """Raw HTTP sends from this process to the fake, which runs in a process of its own (as the gateway's)."""
    done = 0
    url, body, headers = channel.raw_send(fake_url)
    deadline = time.perf_counter() + seconds
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency), headers=headers) as session:

        async def worker() -> None:
            nonlocal done
            while time.perf_counter() < deadline:
                async with session.post(url, json=body) as r:
                    await r.read()
                    done += 1

        started = time.perf_counter()
        await asyncio.gather(*[worker() for _ in range(concurrency)])
        took = time.perf_counter() - started
    return done / took


async def _record(channel: Channel, session: aiohttp.ClientSession, fake_url: str, after: int,
                  wait: float) -> list[dict[str, Any]]:
    params = {**channel.record_params, "after": str(after), "wait": str(wait)}
    async with session.get(f"{fake_url}{channel.record_path}", params=params) as r:
        records: list[dict[str, Any]] = await r.json()
    return records


async def _sends(settings: Settings, channel: Channel, fake_url: str, topic: str, count: int, users: int) -> float:
    """Sends/s from bm_out to the fake, from the arrival times in the fake's record."""
    codec = MessageCodec(settings)
    codec.prepare([topic])
    async with aiohttp.ClientSession() as session:
        first = max((int(r["seq"]) for r in await _record(channel, session, fake_url, 0, 0)), default=0)
        producer = AsyncProducer(settings, **{"linger.ms": 20})
        msgs = channel.replies(count, users)
        await asyncio.gather(*[producer.produce(topic, codec.encode(m, topic), key=m.user_key.encode())
                               for m in msgs])
        await asyncio.to_thread(producer.close)
        deadline = time.monotonic() + max(60.0, count / 100)
        stamps: list[float] = []
        after = first
        while len(stamps) < count:
            if time.monotonic() > deadline:
                raise BeaconError(f"only {len(stamps)} of {count} sends arrived at the fake {channel.api}")
            for record in await _record(channel, session, fake_url, after, 0.5):
                after = max(after, int(record["seq"]))
                stamps.append(float(record[channel.record_stamp]))
    return count / max(max(stamps) - min(stamps), 1e-6)


def _other_channels_replies(channel: Channel, count: int, users: int) -> list[BeaconMessage]:
    """Replies of a channel other than ``channel``: on bm_out, its gateway has nothing to do with them."""
    other = "telegram" if channel.name != "telegram" else "whatsapp"
    return [BeaconMessage.inbound_text(channel=other, account="1", user_id=str(i % users), text="x",
                                       channel_message_id=f"bench-{uuid.uuid4().hex}").reply_text(f"reply {i}")
            for i in range(count)]


async def _produce_paced(settings: Settings, topic: str, msgs: list[BeaconMessage], rate: float,
                         with_channel_header: bool = True) -> None:
    """Produce ``msgs`` to ``topic`` at ``rate`` per second (from the scheduled times: no drift)."""
    codec = MessageCodec(settings)
    codec.prepare([topic])
    values = [codec.encode(m, topic) for m in msgs]
    producer = AsyncProducer(settings)
    futures = []
    started = time.perf_counter()
    for i, (msg, value) in enumerate(zip(msgs, values, strict=True)):
        delay = started + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        headers = with_channel(msg) if with_channel_header else None
        futures.append(producer.produce_nowait(topic, value, key=msg.user_key.encode(), headers=headers))
    await asyncio.gather(*futures)
    await asyncio.to_thread(producer.close)


async def _committed_to_end(settings: Settings, group: str, topic: str, timeout: float = 60.0) -> None:
    """Wait until ``group`` committed every record of ``topic``: the gateway settled (or skipped) each."""
    deadline = time.monotonic() + timeout
    while True:
        ends = await asyncio.to_thread(list_topic_offsets, settings, topic, topic_partitions(settings, topic),
                                       "latest")
        committed = await asyncio.to_thread(committed_offsets, settings, group, topic)
        if all(committed.get((topic, p)) == end for p, end in ends.items() if end > 0):
            return
        if time.monotonic() > deadline:
            raise BeaconError(f"the gateway's group {group} did not commit {topic} to its end within {timeout:.0f}s")
        await asyncio.sleep(0.1)


def _cpu_ms_per(pid: int, before: float | None, count: int) -> float:
    after = cpu_seconds(pid)
    return 0.0 if before is None or after is None or not count else (after - before) * 1000 / count


def _start(argv: list[str], settings: Settings, env: dict[str, str], data_dir: Path,
           log: Path) -> subprocess.Popen[bytes]:
    full = {**os.environ, "BEACON_KAFKA_BOOTSTRAP": settings.kafka.bootstrap,
            "BEACON_SCHEMA_REGISTRY_URL": settings.registry.url, "BEACON_DATA_DIR": str(data_dir),
            "BEACON_LOG_LEVEL": "WARNING", **env}
    return subprocess.Popen([sys.executable, "-m", "beacon", *argv], env=full, cwd=data_dir, stdout=log.open("wb"),
                            stderr=subprocess.STDOUT)


async def _wait_healthy(name: str, port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 90
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise BeaconError(f"the {name} exited during start-up; see {log}")
            try:
                async with session.get(f"http://127.0.0.1:{port}/healthz") as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
    raise BeaconError(f"the {name} did not become healthy in 90s; see {log}")


def _stop(name: str, proc: subprocess.Popen[bytes], notes: list[str]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
        notes.append(f"the {name} did not stop within 30s of SIGTERM: killed")


async def measure(settings: Settings, channel: Channel, *, seconds: float, concurrency: int, paced_rate: float,
                  sends: int, users: int) -> Figures:
    """Run every measurement of one channel's gateway; its topics, the gateway and the fake (each in a
    process of its own) are cleaned up afterwards."""
    figures = Figures(paced_rate=paced_rate)
    run = uuid.uuid4().hex[:8]
    topics = {"in": f"bench_{channel.name}_{run}_in", "out": f"bench_{channel.name}_{run}_out",
              "dlq": f"bench_{channel.name}_{run}_dlq"}
    ensure_topics(settings, [TopicSpec(t, settings.topics.partitions, settings.topics.replication_factor, {})
                             for t in topics.values()])
    bodies = channel.bodies(20000, users)
    port, fake_port = free_port(), free_port()
    fake_url = f"http://127.0.0.1:{fake_port}"
    gateway_env = channel.gateway_env(port, fake_url)
    try:
        with tempfile.TemporaryDirectory(prefix=f"beacon-bench-{channel.name}-") as tmp:
            data_dir = Path(tmp)
            fake_log, log = data_dir / "fake.log", data_dir / "gateway.log"
            fake = _start([f"fake-{channel.name}", "--port", str(fake_port)], settings, channel.fake_env(port),
                          data_dir, fake_log)
            proc = None
            try:
                await _wait_healthy(f"fake {channel.api}", fake_port, fake, fake_log)
                proc = _start(["gateway", channel.name], settings,
                              {"BEACON_TOPIC_IN": topics["in"], "BEACON_TOPIC_OUT": topics["out"],
                               "BEACON_TOPIC_DLQ": topics["dlq"], **gateway_env},
                              data_dir, log)
                await _wait_healthy("gateway", port, proc, log)
                url = f"http://127.0.0.1:{port}{channel.webhook_path}"
                await _webhooks(url, bodies, 1.0, concurrency, channel.header)  # warm-up: connections, schema ids
                figures.raw_produce = await _raw_produce(settings, topics["in"], seconds, concurrency)
                figures.webhooks, figures.webhook_errors = await _webhooks(url, bodies, seconds, concurrency,
                                                                           channel.header)
                cpu = cpu_seconds(proc.pid)
                latencies = await _paced(url, bodies, paced_rate, seconds, channel.header)
                figures.cpu_webhook_ms = _cpu_ms_per(proc.pid, cpu, len(latencies))
                if latencies:
                    figures.p50_ms = latencies[len(latencies) // 2] * 1000
                    figures.p99_ms = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000
                figures.raw_http = await _raw_http(channel, fake_url, min(seconds, 3.0), 64)
                cpu = cpu_seconds(proc.pid)
                figures.sends = await _sends(settings, channel, fake_url, topics["out"], sends, users)
                figures.cpu_send_burst_ms = _cpu_ms_per(proc.pid, cpu, sends)
                group = next(v for k, v in gateway_env.items() if k.endswith("_GATEWAY_GROUP"))
                paced = int(paced_rate * seconds)
                await _committed_to_end(settings, group, topics["out"])
                cpu = cpu_seconds(proc.pid)
                await _produce_paced(settings, topics["out"], channel.replies(paced, users), paced_rate)
                await _committed_to_end(settings, group, topics["out"])
                figures.cpu_send_paced_ms = _cpu_ms_per(proc.pid, cpu, paced)
                for header, attr in ((False, "cpu_foreign_undecorated_ms"), (True, "cpu_foreign_ms")):
                    cpu = cpu_seconds(proc.pid)
                    await _produce_paced(settings, topics["out"], _other_channels_replies(channel, paced, users),
                                         paced_rate, with_channel_header=header)
                    await _committed_to_end(settings, group, topics["out"])
                    setattr(figures, attr, _cpu_ms_per(proc.pid, cpu, paced))
            finally:
                if proc is not None:
                    _stop("gateway", proc, figures.notes)
                _stop(f"fake {channel.api}", fake, figures.notes)
    finally:
        admin = make_admin(settings)
        futures = admin.delete_topics(list(topics.values()), operation_timeout=10)
        for fut in futures.values():
            try:
                fut.result(timeout=15)
            except KafkaException as exc:
                figures.notes.append(f"could not delete a bench topic: {exc}")
    return figures


def report(f: Figures, *, seconds: float, concurrency: int, channel: str = "whatsapp") -> str:
    api = "Bot API" if channel == "telegram" else "Cloud API"
    lines = [
        f"{channel} gateway, inbound, {concurrency} concurrent connections, {seconds:.0f}s per run:",
        f"  raw produce+ack baseline:     {f.raw_produce:10,.0f} msg/s",
        f"  {'webhooks + secret' if channel == 'telegram' else 'signed webhooks'} -> bm_in:"
        f"{'   ' if channel == 'telegram' else '     '}{f.webhooks:10,.0f} webhooks/s "
        f"({f.webhooks / f.raw_produce if f.raw_produce else 0:.2f}x baseline; target >= 2,000)"
        + (f", {f.webhook_errors} non-200" if f.webhook_errors else ""),
        f"  time to 200 at {f.paced_rate:.0f}/s:        p50 {f.p50_ms:.1f} ms, p99 {f.p99_ms:.1f} ms "
        "(target p99 <= 50)",
        "outbound, limiters off:",
        f"  raw HTTP POSTs to the fake:   {f.raw_http:10,.0f} req/s",
        f"  bm_out -> {api} sends:{' ' * (13 - len(api))}{f.sends:10,.0f} sends/s "
        f"({f.sends / f.raw_http if f.raw_http else 0:.2f}x raw HTTP)",
        f"gateway CPU per message (ms): webhook at {f.paced_rate:.0f}/s {f.cpu_webhook_ms:.2f}; send in the burst "
        f"{f.cpu_send_burst_ms:.2f}, at {f.paced_rate:.0f}/s {f.cpu_send_paced_ms:.2f}; another channel's record on "
        f"bm_out at {f.paced_rate:.0f}/s {f.cpu_foreign_ms:.3f} (without the beacon-channel header, as older "
        f"producers wrote them: {f.cpu_foreign_undecorated_ms:.3f})",
    ]
    lines.extend(f"note: {n}" for n in f.notes)
    return "\n".join(lines)
