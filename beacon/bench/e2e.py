"""``beacon bench e2e``: the whole stack, from a signed webhook POST to the reply at the fake Cloud API.

It drives the fake's webhook driver into the running stack (``beacon dev``) and reads what the
gateway sent from the fake's record (``/_fake/sent``). Every simulated user writes in turn (a
user's next message leaves after the previous POST was acknowledged, like a person typing), so
per-user order is well defined; a token bucket paces all users together at the target rate.

Per message it measures POST -> reply latency; per run, throughput, lost messages, duplicate
replies and per-user order violations. In the same run it measures the raw Kafka baseline: a
confluent-kafka produce -> consume round trip on the same broker, at the same rate.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from beacon.config import Settings
from beacon.errors import BeaconError
from beacon.kafka import TopicSpec, ensure_topics, make_admin, make_consumer, make_producer


@dataclass
class RunResult:
    """One paced run through the stack (or the Kafka baseline)."""

    name: str
    rate: float
    seconds: float
    sent: int = 0
    send_errors: int = 0
    latencies: list[float] = field(default_factory=list)  # seconds, in send order
    send_times: list[float] = field(default_factory=list)
    reply_times: list[float] = field(default_factory=list)
    lost: int = 0
    duplicates: int = 0
    order_violations: int = 0
    window: float = 0.0

    @property
    def throughput(self) -> float:
        """Replies per second between the first and the last reply."""
        if len(self.reply_times) < 2:
            return 0.0
        span = max(self.reply_times) - min(self.reply_times)
        return (len(self.reply_times) - 1) / span if span > 0 else 0.0

    def pct(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))] * 1000


class Stack:
    """The running stack as the benchmark sees it: a gateway to post to and a fake that records sends."""

    def __init__(self, settings: Settings, fake_url: str | None, gateway_url: str | None) -> None:
        self.settings = settings
        self.fake_url = (fake_url or f"http://127.0.0.1:{settings.fake_whatsapp_port}").rstrip("/")
        self.gateway_url = (gateway_url or f"http://127.0.0.1:{settings.gateway_port}").rstrip("/")

    async def check(self, client: httpx.AsyncClient) -> None:
        for name, url in (("fake Cloud API", f"{self.fake_url}/_fake/stats"),
                          ("WhatsApp gateway", f"{self.gateway_url}/healthz")):
            try:
                (await client.get(url, timeout=5)).raise_for_status()
            except httpx.HTTPError as exc:
                raise BeaconError(
                    f"the {name} at {url} does not answer ({exc}); start the stack first with `beacon dev` "
                    "(or ./scripts/dev) and keep it running"
                ) from exc


async def _collect(client: httpx.AsyncClient, fake_url: str, after: int, prefix: str,
                   replies: dict[str, list[float]], order: dict[str, list[int]], stop: asyncio.Event) -> None:
    """Follow the fake's record of sends, keeping the replies of this run."""
    seq = after
    while not stop.is_set():
        try:
            response = await client.get(f"{fake_url}/_fake/sent", params={"after": seq, "wait": 0.5}, timeout=10)
        except httpx.HTTPError:
            await asyncio.sleep(0.2)
            continue
        for sent in response.json():
            seq = max(seq, int(sent["seq"]))
            body = sent.get("body") or {}
            text = ((body.get("text") or {}).get("body")) or ""
            marker = text.rfind(prefix)
            if marker < 0:
                continue
            token = text[marker:].split()[0]
            _, user, number = token.split(":")
            replies[token].append(float(sent["received_at"]))
            order[user].append(int(number))


async def run_stack(stack: Stack, name: str, rate: float, seconds: float, users: int) -> RunResult:
    """Pace ``rate`` messages/s for ``seconds`` from ``users`` simulated users; wait for their replies."""
    from beacon.fakes.whatsapp.driver import WebhookDriver

    result = RunResult(name, rate, seconds)
    run = uuid.uuid4().hex[:6]
    prefix = f"e2e{run}:"
    secret = stack.settings.whatsapp_app_secret
    total = int(rate * seconds)
    sent_at: dict[str, float] = {}
    replies: dict[str, list[float]] = defaultdict(list)
    order: dict[str, list[int]] = defaultdict(list)
    stop = asyncio.Event()
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:
        await stack.check(client)
        after = int((await client.get(f"{stack.fake_url}/_fake/stats")).json()["last_seq"])
        collector = asyncio.create_task(_collect(client, stack.fake_url, after, prefix, replies, order, stop))
        driver = WebhookDriver(stack.gateway_url, secret.get_secret_value() if secret else None,
                               stack.settings.whatsapp_phone_number_id, max_attempts=3)

        # Round robin: message i goes to user i % users, so every user writes at rate/users and stays
        # within the Cloud API's pair limit, which the gateway enforces (a user writing faster would be
        # throttled to one message per 6 s, like on Meta).
        queues: list[asyncio.Queue[bool | None]] = [asyncio.Queue() for _ in range(users)]

        async def pace() -> None:
            started = time.perf_counter()
            for i in range(total):
                delay = started + i / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                queues[i % users].put_nowait(True)
            for queue in queues:
                queue.put_nowait(None)  # stop, after the tokens already queued

        async def user(index: int) -> None:
            number = f"4477009{index:05d}"
            seq = 0
            while await queues[index].get():
                token = f"{prefix}{number}:{seq}"
                sent_at[token] = time.time()
                try:
                    await driver.send_text(number, f"bench {token}")
                    result.sent += 1
                except BeaconError:
                    result.send_errors += 1
                    sent_at.pop(token)
                seq += 1

        senders = [asyncio.create_task(user(i)) for i in range(users)]
        began = time.perf_counter()
        await pace()
        await asyncio.gather(*senders)  # every POST answered (a slow gateway makes the run longer)
        # Wait while replies keep coming (an overloaded stack drains its backlog late, it does not lose it);
        # give up 15 s after the last one, or after 5 minutes in all.
        last_progress, answered = time.monotonic(), -1
        give_up = time.monotonic() + 300
        while time.monotonic() < give_up and time.monotonic() - last_progress < 15:
            now_answered = sum(1 for t in sent_at if t in replies)
            if now_answered == len(sent_at):
                break
            if now_answered != answered:
                answered, last_progress = now_answered, time.monotonic()
            await asyncio.sleep(0.2)
        await asyncio.sleep(1.0)  # late duplicates would show up here
        stop.set()
        await driver.aclose()
        collector.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await collector
        result.window = time.perf_counter() - began
    for token, when in sorted(sent_at.items(), key=lambda item: item[1]):
        got = replies.get(token)
        if not got:
            result.lost += 1
            continue
        result.duplicates += len(got) - 1
        result.send_times.append(when)
        result.reply_times.append(got[0])
        result.latencies.append(max(0.0, got[0] - when))
    for numbers in order.values():
        result.order_violations += sum(1 for a, b in itertools.pairwise(numbers) if b < a)
    return result


def kafka_baseline(settings: Settings, rate: float, seconds: float) -> RunResult:
    """confluent-kafka produce -> consume round trips on the same broker, paced like the stack run."""
    result = RunResult(f"kafka baseline at {rate:.0f}/s", rate, seconds)
    topic = f"bench-baseline-{uuid.uuid4().hex[:8]}"
    ensure_topics(settings, [TopicSpec(topic, settings.topic_partitions, 1, {})], strict=True)
    consumer = make_consumer(settings, f"{topic}-g", **{"auto.offset.reset": "earliest", "fetch.wait.max.ms": 5})
    consumer.subscribe([topic])
    total = int(rate * seconds)
    received: dict[int, float] = {}
    ready = threading.Event()
    stop = threading.Event()

    def consume() -> None:
        while len(received) < total and not stop.is_set():
            msg = consumer.poll(0.1)
            if consumer.assignment():
                ready.set()
            value = msg.value() if msg is not None and msg.error() is None else None
            if value is not None:
                received[int(value)] = time.time()

    thread = threading.Thread(target=consume, daemon=True)
    thread.start()
    ready.wait(30)
    producer = make_producer(settings)
    for partition in range(settings.topic_partitions):  # warm up: every partition fetched once
        producer.produce(topic, b"-1", partition=partition)
    producer.flush(10)
    deadline = time.monotonic() + 30
    while -1 not in received and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.5)
    received.clear()
    sent_at: dict[int, float] = {}
    started = time.perf_counter()
    for i in range(total):
        delay = started + i / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        sent_at[i] = time.time()
        producer.produce(topic, str(i).encode(), key=f"user-{i % 200}")
        producer.poll(0)
    producer.flush(30)
    deadline = time.monotonic() + 30
    while len(received) < total and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    thread.join(5)
    consumer.close()
    make_admin(settings).delete_topics([topic])
    result.sent = total
    for i, when in sent_at.items():
        if i not in received:
            result.lost += 1
            continue
        result.send_times.append(when)
        result.reply_times.append(received[i])
        result.latencies.append(max(0.0, received[i] - when))
    return result


def table(results: list[RunResult]) -> str:
    head = ("| run | target rate | sent | throughput (msg/s) | p50 ms | p95 ms | p99 ms | lost | duplicates "
            "| order violations |")
    rows = [head, "|" + "---|" * 10]
    for r in results:
        rows.append(
            f"| {r.name} | {r.rate:,.0f}/s | {r.sent:,} | {r.throughput:,.0f} | {r.pct(50):.1f} | {r.pct(95):.1f} | "
            f"{r.pct(99):.1f} | {r.lost} | {r.duplicates} | {r.order_violations} |"
        )
    return "\n".join(rows)


def plot(results: list[RunResult], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (lat, thr) = plt.subplots(2, 1, figsize=(11, 7))
    for r in results:
        if not r.send_times:
            continue
        t0 = r.send_times[0]
        lat.plot([t - t0 for t in r.send_times], [x * 1000 for x in r.latencies], ".", markersize=2, label=r.name)
        per_second: dict[int, int] = defaultdict(int)
        for t in r.reply_times:
            per_second[int(t - t0)] += 1
        seconds = sorted(per_second)
        thr.plot(seconds, [per_second[s] for s in seconds], label=r.name)
    lat.set(ylabel="latency ms (POST -> reply)", yscale="log", title="Beacon end to end")
    thr.set(xlabel="seconds into the run", ylabel="replies per second")
    lat.legend(fontsize=8)
    thr.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


async def bench(settings: Settings, *, rate: float, seconds: float, latency_rate: float, latency_seconds: float,
                users: int, fake_url: str | None, gateway_url: str | None, out: Path) -> list[RunResult]:
    stack = Stack(settings, fake_url, gateway_url)
    results = [await asyncio.to_thread(kafka_baseline, settings, latency_rate, latency_seconds)]
    results.append(await run_stack(stack, f"stack at {latency_rate:.0f}/s", latency_rate, latency_seconds, users))
    results.append(await asyncio.to_thread(kafka_baseline, settings, rate, min(seconds, 10)))
    results.append(await run_stack(stack, f"stack at {rate:.0f}/s", rate, seconds, users))
    plot(results, out.with_suffix(".png"))
    out.with_suffix(".md").write_text(table(results) + "\n")
    return results


def summary(results: list[RunResult]) -> dict[str, Any]:
    base_low, low, base_high, high = results
    return {
        "throughput": high.throughput,
        "throughput_ratio": high.throughput / base_high.throughput if base_high.throughput else float("nan"),
        "p99_low": low.pct(99),
        "p99_ratio": low.pct(99) / base_low.pct(99) if base_low.pct(99) else float("nan"),
        "lost": low.lost + high.lost,
        "duplicates": low.duplicates + high.duplicates,
        "order_violations": low.order_violations + high.order_violations,
    }
