"""``beacon bench e2e``: the whole stack, from a signed webhook POST to the reply at the fake Cloud API.

It drives the fake's webhook driver into the running stack (``beacon dev``) and reads what the
gateway sent from the fake's record (``/_fake/sent``). Every simulated user writes in turn (a
user's next message leaves after the previous POST was acknowledged, like a person typing), so
per-user order is well defined; a token bucket paces all users together at the target rate.

It finds the stack ``beacon dev`` runs from its card (``<data dir>/dev-stack.json``: the gateway's
and the fake's URLs, the development app secret the gateway checks, each process's pid), and
before measuring sends one message end to end: a gateway that refuses the bench's webhooks, or a
stack that does not answer, stops the bench with the reason instead of a run of zeros.

Per message it measures the latency from the time the message was *scheduled* to leave (not when
a sender got to it: an overloaded stack delays the senders, and hiding that would be coordinated
omission) to the reply at the fake; per run, throughput, lost messages, duplicate replies,
per-user order violations, and each stack process's CPU share and peak RSS. In the same run, in a
process of its own and for as long as the stack run it is compared with, it measures the raw Kafka
baseline: a confluent-kafka produce -> consume round trip on the same broker, at the same rate.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import multiprocessing
import threading
import time
import uuid
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import httpx

from beacon.bench.hops import Breakdown, hop_table
from beacon.config import Settings
from beacon.errors import BeaconError
from beacon.kafka import TopicSpec, ensure_topics, make_admin, make_consumer, make_producer
from beacon.ops import stackfile
from beacon.ops.process import cpu_seconds, rss_bytes

if TYPE_CHECKING:
    from beacon.fakes.whatsapp.driver import WebhookDeliveryError

#: Users the probe message comes from (outside the run's users, so it never counts in a run).
PROBE_USER = "447700999999"
#: Attempts at one webhook, and seconds each may take (waiting for a connection included), before the bench
#: gives it up: like Meta, a refused or unanswered webhook is delivered again.
WEBHOOK_ATTEMPTS = 3
WEBHOOK_TIMEOUT = 10.0
#: Webhooks given up on after which a run stops at once: the gateway has stopped coping, and waiting for
#: every queued webhook to fail its attempts in turn would take minutes.
GIVE_UP_LIMIT = 100


@dataclass
class RunResult:
    """One paced run through the stack (or the Kafka baseline)."""

    name: str
    rate: float
    seconds: float
    sent: int = 0
    #: Webhooks given up on whose last attempt the gateway answered with an error status.
    refused: int = 0
    #: Webhooks given up on whose last attempt got no answer within WEBHOOK_TIMEOUT (an overloaded stack or
    #: load generator), or no connection.
    unanswered: int = 0
    latencies: list[float] = field(default_factory=list)  # seconds, in send order
    send_times: list[float] = field(default_factory=list)
    reply_times: list[float] = field(default_factory=list)
    lost: int = 0
    duplicates: int = 0
    order_violations: int = 0
    window: float = 0.0
    #: Per stack process: (CPU share in cores over the run, peak RSS in MB).
    processes: dict[str, tuple[float, float]] = field(default_factory=dict)
    #: What ran: "stack" (Beacon), "kafka" (the raw Kafka round trip) or "bare" (the bare topology).
    kind: str = "stack"
    #: Per-hop durations, from the hops each reply carried (stack runs only).
    hops: Breakdown = field(default_factory=Breakdown)

    def give_up(self, error: WebhookDeliveryError) -> None:
        """Count a webhook the bench gave up on, by whether the gateway answered it at all."""
        if error.status is None:
            self.unanswered += 1
        else:
            self.refused += 1

    @property
    def cpu_ms_per_message(self) -> float:
        """CPU milliseconds the stack's processes spent per answered message."""
        answered = len(self.reply_times)
        cores = sum(share for share, _ in self.processes.values())
        return cores * self.window * 1000 / answered if answered and self.processes else float("nan")

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


class RunTarget(Protocol):
    """What ``run_stack`` drives: Beacon's running stack, or the bare topology (``beacon.bench.bare``)."""

    settings: Settings
    gateway_url: str
    fake_url: str
    app_secret: str | None
    phone_number_id: str

    async def check(self, client: httpx.AsyncClient) -> None: ...

    def pids(self) -> dict[str, int]:
        """Process name -> pid of each process whose CPU and memory the run measures."""
        ...


class Stack:
    """The running stack as the benchmark sees it: a gateway to post to and a fake that records sends."""

    def __init__(self, settings: Settings, fake_url: str | None, gateway_url: str | None,
                 card: stackfile.StackCard | None = None) -> None:
        self.settings = settings
        self.card = card
        self.fake_url = (fake_url or f"http://127.0.0.1:{settings.local.fake_whatsapp_port}").rstrip("/")
        self.gateway_url = (gateway_url or f"http://127.0.0.1:{settings.whatsapp.gateway_port}").rstrip("/")
        secret = settings.whatsapp.app_secret
        self.app_secret = (card.whatsapp_app_secret if card is not None and card.whatsapp_app_secret
                           else secret.get_secret_value() if secret is not None else None)
        self.phone_number_id = card.phone_number_id if card is not None else settings.whatsapp.phone_number_id

    @classmethod
    def find(cls, settings: Settings, fake_url: str | None = None, gateway_url: str | None = None) -> Stack:
        """The stack ``beacon dev`` runs (from its card), or the one the settings and URLs describe."""
        card = stackfile.read(settings)
        if card is not None and card.fake_url is None and fake_url is None:
            raise BeaconError(
                "the stack `beacon dev` runs talks to Meta (real Cloud API credentials are set), and the bench "
                "needs the fake Cloud API to see the replies: run `beacon dev` without real credentials"
            )
        if card is not None:
            fake_url = fake_url or card.fake_url
            gateway_url = gateway_url or card.gateway_url
        return cls(settings, fake_url, gateway_url, card)

    def pids(self) -> dict[str, int]:
        fresh = stackfile.read(self.settings)  # pids as they are now (a process may have restarted)
        return fresh.processes if fresh is not None else {}

    def describe(self) -> str:
        found = (f"the stack `beacon dev` runs ({stackfile.path(self.settings)})" if self.card is not None
                 else "the stack the settings describe (no `beacon dev` card found)")
        return f"{found}: gateway {self.gateway_url}, fake Cloud API {self.fake_url}"

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

    async def probe(self, client: httpx.AsyncClient, timeout: float = 60.0) -> float:
        """One message end to end before measuring; returns its latency in seconds.

        Raises BeaconError saying why when the gateway refuses the bench's webhook (a wrong or missing
        app secret) or no reply comes back (workers or API not running)."""
        from beacon.fakes.whatsapp import payloads
        from beacon.fakes.whatsapp.driver import webhook_url
        from beacon.gateway.whatsapp.signature import HEADER, sign

        await self.check(client)
        after = int((await client.get(f"{self.fake_url}/_fake/stats")).json()["last_seq"])
        token = f"probe-{uuid.uuid4().hex[:8]}"
        body = payloads.encode(payloads.text_webhook(PROBE_USER, f"bench {token}",
                                                     phone_number_id=self.phone_number_id))
        headers = {"Content-Type": "application/json"}
        if self.app_secret:
            headers[HEADER] = sign(body, self.app_secret)
        url = webhook_url(self.gateway_url)
        began = time.monotonic()
        response = await client.post(url, content=body, headers=headers, timeout=10)
        if response.status_code != 200:
            hint = ("the bench signs with the app secret of the stack `beacon dev` runs; this gateway checks another "
                    "one: set BEACON_WHATSAPP_APP_SECRET to the secret the gateway uses" if self.app_secret else
                    "the bench has no app secret to sign with: run it while `beacon dev` runs (it reads the "
                    f"stack's card, {stackfile.path(self.settings)}), or set BEACON_WHATSAPP_APP_SECRET to the "
                    "secret the gateway uses")
            raise BeaconError(f"the gateway at {url} refused the bench's webhook with {response.status_code} "
                              f"({response.text.strip()[:200]}): {hint}")
        deadline = began + timeout
        seq = after
        while time.monotonic() < deadline:
            sent = (await client.get(f"{self.fake_url}/_fake/sent", params={"after": seq, "wait": 0.5},
                                     timeout=10)).json()
            for item in sent:
                seq = max(seq, int(item["seq"]))
                if token in (((item.get("body") or {}).get("text") or {}).get("body") or ""):
                    return time.monotonic() - began
        raise BeaconError(f"the gateway accepted the probe message, but no reply reached the fake Cloud API within "
                          f"{timeout:.0f}s: are the workers and the API running? (see the stack's logs, "
                          f"{self.settings.log_dir}/<process>.log)")


class ProcessMeter:
    """CPU share and peak RSS of the stack's processes (from its card) over one run."""

    def __init__(self, processes: dict[str, int]) -> None:
        self.processes = dict(processes)
        self._cpu0 = {name: cpu_seconds(pid) for name, pid in self.processes.items()}
        self._rss = {name: 0 for name in self.processes}
        self._began = time.monotonic()

    def sample(self) -> None:
        for name, pid in self.processes.items():
            self._rss[name] = max(self._rss[name], rss_bytes(pid) or 0)

    def result(self) -> dict[str, tuple[float, float]]:
        elapsed = max(1e-9, time.monotonic() - self._began)
        out: dict[str, tuple[float, float]] = {}
        for name, pid in self.processes.items():
            before, after = self._cpu0[name], cpu_seconds(pid)
            if before is None or after is None:
                continue  # restarted or gone during the run: not comparable
            out[name] = ((after - before) / elapsed, self._rss[name] / 2**20)
        return out


async def _collect(client: httpx.AsyncClient, fake_url: str, after: int, prefix: str,
                   replies: dict[str, list[float]], order: dict[str, list[int]], stop: asyncio.Event,
                   hops: Breakdown | None = None) -> None:
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
            if hops is not None:
                hops.add(sent.get("hops"), float(sent["received_at"]))
            order[user].append(int(number))


async def run_stack(stack: RunTarget, name: str, rate: float, seconds: float, users: int) -> RunResult:
    """Pace ``rate`` messages/s for ``seconds`` from ``users`` simulated users; wait for their replies."""
    from beacon.fakes.whatsapp.driver import WebhookDeliveryError, WebhookDriver

    result = RunResult(name, rate, seconds)
    run = uuid.uuid4().hex[:6]
    prefix = f"e2e{run}:"
    total = int(rate * seconds)
    sent_at: dict[str, float] = {}
    replies: dict[str, list[float]] = defaultdict(list)
    order: dict[str, list[int]] = defaultdict(list)
    stop, abort = asyncio.Event(), asyncio.Event()
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:
        await stack.check(client)
        after = int((await client.get(f"{stack.fake_url}/_fake/stats")).json()["last_seq"])
        collector = asyncio.create_task(_collect(client, stack.fake_url, after, prefix, replies, order, stop,
                                                  result.hops))
        driver = WebhookDriver(stack.gateway_url, stack.app_secret, stack.phone_number_id,
                               max_attempts=WEBHOOK_ATTEMPTS, timeout=WEBHOOK_TIMEOUT)
        meter = ProcessMeter(stack.pids())

        # Round robin: message i goes to user i % users, so every user writes at rate/users and stays
        # within the Cloud API's pair limit, which the gateway enforces (a user writing faster would be
        # throttled to one message per 6 s, like on Meta).
        # Each token carries the wall-clock time its message was scheduled to leave: latency counts from
        # there, so a sender held up by a slow gateway adds its wait to the latency instead of hiding it.
        queues: list[asyncio.Queue[float | None]] = [asyncio.Queue() for _ in range(users)]

        async def pace() -> None:
            started, wall = time.perf_counter(), time.time()
            for i in range(total):
                delay = started + i / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                if abort.is_set():
                    break
                queues[i % users].put_nowait(wall + i / rate)
            for queue in queues:
                queue.put_nowait(None)  # stop, after the tokens already queued

        async def user(index: int) -> None:
            number = f"4477009{index:05d}"
            seq = 0
            while (scheduled := await queues[index].get()) is not None and not abort.is_set():
                token = f"{prefix}{number}:{seq}"
                sent_at[token] = scheduled
                try:
                    await driver.send_text(number, f"bench {token}")
                    result.sent += 1
                except WebhookDeliveryError as exc:
                    result.give_up(exc)
                    sent_at.pop(token)
                    if result.refused + result.unanswered >= GIVE_UP_LIMIT:
                        abort.set()
                seq += 1

        async def measure() -> None:
            while not stop.is_set():
                meter.sample()
                await asyncio.sleep(0.5)

        senders = [asyncio.create_task(user(i)) for i in range(users)]
        sampler = asyncio.create_task(measure())
        began = time.perf_counter()
        await pace()
        await asyncio.gather(*senders)  # every POST answered (a slow gateway makes the run longer)
        if abort.is_set():
            stop.set()
            await driver.aclose()
            for task in (collector, sampler):
                task.cancel()
            raise BeaconError(
                f"{name}: stopped after the gateway at {stack.gateway_url} failed {GIVE_UP_LIMIT} webhooks "
                f"({result.refused} refused, {result.unanswered} unanswered within {WEBHOOK_TIMEOUT:.0f} s, "
                f"{WEBHOOK_ATTEMPTS} attempts each): see the gateway's log; the stack is not healthy enough to measure")
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
        result.window = time.perf_counter() - began
        result.processes = meter.result()
        await asyncio.sleep(1.0)  # late duplicates would show up here
        stop.set()
        await driver.aclose()
        for task in (collector, sampler):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    for token, when in sorted(sent_at.items(), key=lambda item: item[1]):
        got = replies.get(token)
        if not got:
            result.lost += 1
            continue
        result.duplicates += len(got) - 1
        result.send_times.append(when)
        result.reply_times.append(got[0])
        result.latencies.append(max(0.0, got[0] - when))
    # Order is promised for acknowledged messages: a webhook the driver gave up on (never answered 200) may still
    # reach bm_in late, after the same user's next message, as a channel's own redelivery would.
    for number, seqs in order.items():
        kept = [n for n in seqs if f"{prefix}{number}:{n}" in sent_at]
        result.order_violations += sum(1 for a, b in itertools.pairwise(kept) if b < a)
    return result


def kafka_baseline(settings: Settings, rate: float, seconds: float) -> RunResult:
    """confluent-kafka produce -> consume round trips on the same broker, paced like the stack run."""
    result = RunResult(f"kafka baseline at {rate:.0f}/s", rate, seconds, kind="kafka")
    topic = f"bench-baseline-{uuid.uuid4().hex[:8]}"
    ensure_topics(settings, [TopicSpec(topic, settings.topics.partitions, 1, {})], strict=True)
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
    for partition in range(settings.topics.partitions):  # warm up: every partition fetched once
        producer.produce(topic, b"-1", partition=partition)
    producer.flush(10)
    deadline = time.monotonic() + 30
    while -1 not in received and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.5)
    received.clear()
    sent_at: dict[int, float] = {}
    started, wall = time.perf_counter(), time.time()
    for i in range(total):
        delay = started + i / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        sent_at[i] = wall + i / rate  # the scheduled time, as in the stack run
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
    head = ("| run | target rate | sent | refused | no answer | throughput (msg/s) | p50 ms | p95 ms | p99 ms | lost "
            "| duplicates | order violations | CPU ms/msg |")
    rows = [head, "|" + "---|" * 13]
    for r in results:
        rows.append(
            f"| {r.name} | {r.rate:,.0f}/s | {r.sent:,} | {r.refused:,} | {r.unanswered:,} | {r.throughput:,.0f} | "
            f"{r.pct(50):.1f} | {r.pct(95):.1f} | {r.pct(99):.1f} | {r.lost} | {r.duplicates} | {r.order_violations} | "
            f"{r.cpu_ms_per_message:.1f} |"
        )
    return "\n".join(rows)


def process_table(results: list[RunResult]) -> str:
    """Each stack process's CPU share (cores) and peak RSS in each stack run."""
    runs = [r for r in results if r.processes]
    if not runs:
        return "(no process figures: the stack's card, written by `beacon dev`, was not found)"
    names = sorted({name for r in runs for name in r.processes})
    rows = ["| process | " + " | ".join(f"{r.name}: CPU cores, RSS MB" for r in runs) + " |",
            "|---|" + "---|" * len(runs)]
    for name in names:
        cells = [f"{r.processes[name][0]:.2f}, {r.processes[name][1]:.0f}" if name in r.processes else "-"
                 for r in runs]
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    totals = [f"{sum(c for c, _ in r.processes.values()):.2f}, {sum(m for _, m in r.processes.values()):.0f}"
              for r in runs]
    rows.append("| all | " + " | ".join(totals) + " |")
    return "\n".join(rows)


def hops_report(results: list[RunResult]) -> str:
    """The per-hop breakdown of the stack runs (``beacon.bench.hops``)."""
    return hop_table([(r.name, r.hops) for r in results if r.kind == "stack" and r.hops.messages])


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


async def baseline_in_own_process(settings: Settings, rate: float, seconds: float) -> RunResult:
    """The Kafka baseline in a process of its own (so it competes for the CPU like the stack's processes
    do, not with the bench's event loop)."""
    loop = asyncio.get_running_loop()
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return await loop.run_in_executor(pool, kafka_baseline, settings, rate, seconds)


def summary(results: list[RunResult]) -> dict[str, Any]:
    base_low, low, base_high, high = [r for r in results if r.kind != "bare"]
    return {
        "throughput": high.throughput,
        "throughput_ratio": high.throughput / base_high.throughput if base_high.throughput else float("nan"),
        "p99_low": low.pct(99),
        "p99_ratio": low.pct(99) / base_low.pct(99) if base_low.pct(99) else float("nan"),
        "cpu_ms_low": low.cpu_ms_per_message,
        "refused": low.refused + high.refused,
        "unanswered": low.unanswered + high.unanswered,
        "lost": low.lost + high.lost,
        "duplicates": low.duplicates + high.duplicates,
        "order_violations": low.order_violations + high.order_violations,
    }


def given_up_report(s: dict[str, Any]) -> list[str]:
    """What the operator reads about webhooks the bench gave up on, naming who did not cope."""
    lines = []
    if s["refused"]:
        lines.append(f"error: the gateway refused {s['refused']} of the bench's webhooks even after "
                     f"{WEBHOOK_ATTEMPTS} attempts (see the gateway's log): the figures above do not describe a "
                     "healthy run")
    if s["unanswered"]:
        lines.append(f"error: {s['unanswered']} of the bench's webhooks got no answer within {WEBHOOK_TIMEOUT:.0f} s "
                     f"in {WEBHOOK_ATTEMPTS} attempts: the stack (or the load generator) did not keep up with the "
                     "offered rate on this machine, so the figures above describe an overloaded run; try a lower "
                     "--rate, or a machine with more free cores")
    return lines
