"""``beacon bench worker``: messages/s through one real worker process, vs raw Kafka.

A backlog of inbound texts from many users is put on fresh topics; then one ``beacon worker``
process drains it. Throughput is measured from the broker timestamps of the first and last reply
(so start-up and the group join are not counted). Modes: ``api`` (the worker calls a stub of
the API over HTTP, answering at once), ``echo`` (the worker answers in process, no HTTP), and
``slow`` (the stub answers after ``--slow-latency`` seconds: an LLM-like API). The baseline is
a plain confluent-kafka consume+produce loop over the same backlog on the same broker. Each run
also checks that every message was answered and every user's replies came in order, and samples
the worker's resident memory.

``burst`` (coalescing, ``BEACON_COALESCE_WINDOW_MS``): every user sends ``--burst`` texts in a row (a backlog
of bursts, the stub API at 0 ms), drained twice on fresh topics: with coalescing off and on. It reports what
coalescing saves: turns the API answers per message (each turn is one LLM request when an agent answers) and
HTTP requests per message. A reply answering several messages counts for each (``You said: m0\nm1...``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import httpx

from beacon.codec import MessageCodec, get_codec
from beacon.config import Settings
from beacon.errors import BeaconError
from beacon.kafka import TopicSpec, ensure_topics, make_consumer, make_producer, topic_specs
from beacon.kafka_security import connection_environment
from beacon.messages import BeaconMessage
from beacon.ops.process import cpu_seconds, free_port, rss_bytes

BEACON = str(Path(sys.executable).with_name("beacon"))


@dataclass
class RunResult:
    name: str
    messages: int
    seconds: float
    answered: int
    in_order: bool
    peak_rss_mb: float | None
    worker_cpu: float | None = None
    stub_cpu: float | None = None
    turns: int | None = None
    """Turns the stub API answered (a message alone, or a coalesced group): LLM requests with an agent."""
    http_requests: int | None = None

    @property
    def rate(self) -> float:
        return self.messages / self.seconds if self.seconds > 0 else 0.0


def _fresh(settings: Settings, partitions: int) -> Settings:
    tag = uuid.uuid4().hex[:8]
    fresh = settings.replace(
        topic_in=f"bench-in-{tag}",
        topic_out=f"bench-out-{tag}",
        topic_dlq=f"bench-dlq-{tag}",
        topic_partitions=partitions,
        worker_group=f"bench-workers-{tag}",
    )
    ensure_topics(fresh, topic_specs(fresh), strict=True)
    return fresh


def backlog(settings: Settings, codec: MessageCodec, users: int, per_user: int) -> int:
    """Put ``users * per_user`` texts on bm_in, interleaved across users."""
    producer = make_producer(settings, **{"linger.ms": 20, "batch.num.messages": 10000})
    n = 0
    for i in range(per_user):
        for u in range(users):
            msg = BeaconMessage.inbound_text(channel="whatsapp", account="100", user_id=f"b{u}", text=f"m{i}",
                                             channel_message_id=f"wamid.b{u}.{i}")
            producer.produce(settings.topics.inbound, codec.encode(msg, settings.topics.inbound), key=msg.user_key)
            n += 1
            if n % 10000 == 0:
                producer.poll(0)
    if producer.flush(60):
        raise BeaconError("the backlog was not acknowledged by the broker within 60s")
    return n


def baseline(settings: Settings, total: int) -> RunResult:
    """Raw confluent-kafka: consume the backlog and produce each value to another topic."""
    sink = f"{settings.topics.outbound}-raw"
    ensure_topics(settings, [TopicSpec(sink, settings.topics.partitions, settings.topics.replication_factor, {})])
    consumer = make_consumer(settings, f"{settings.workers.group}-raw")
    consumer.subscribe([settings.topics.inbound])
    producer = make_producer(settings)
    seen = 0
    start: float | None = None
    deadline = time.monotonic() + 120
    while seen < total and time.monotonic() < deadline:
        for rec in consumer.consume(1000, 0.2):
            if rec.error():
                continue
            if start is None:
                start = time.monotonic()
            producer.produce(sink, rec.value(), key=rec.key())
            seen += 1
        producer.poll(0)
        consumer.commit(asynchronous=True)
    producer.flush(30)
    elapsed = time.monotonic() - (start or time.monotonic())
    consumer.close()
    return RunResult("raw confluent-kafka consume+produce", seen, elapsed, seen, True, None)


class _Stub:
    def __init__(self, latency: float, logdir: Path) -> None:
        self.port = free_port()
        with open(logdir / "stub.log", "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "beacon.fakes.beacon_api", "--port", str(self.port), "--token",
                 "bench-token", "--latency-min", str(latency), "--latency-max", str(latency)],
                stdout=log, stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 60  # a loaded machine takes its time to start a Python process
        # One client for the whole poll: httpx.get() would load the CA bundle again for every try (~50 ms of CPU).
        with httpx.Client(limits=httpx.Limits(max_keepalive_connections=0)) as client:
            while time.monotonic() < deadline:
                try:
                    if client.get(f"{self.url}/healthz", timeout=0.5).status_code == 200:
                        return
                except httpx.HTTPError:
                    time.sleep(0.1)
        raise BeaconError("the stub API did not start")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def worker_run(name: str, settings: Settings, codec: MessageCodec, total: int, users: int, *, pipeline: str,
               api_url: str, logdir: Path, max_in_flight: int, stub_pid: int | None = None,
               timeout: float = 300.0, extra_env: dict[str, str] | None = None) -> RunResult:
    """Start one worker on the backlog, wait for every reply, measure."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BEACON_")}
    env.update(connection_environment(settings))
    env.update({
        "BEACON_DATA_DIR": str(logdir / "data"),
        "BEACON_TOPIC_IN": settings.topics.inbound, "BEACON_TOPIC_OUT": settings.topics.outbound,
        "BEACON_TOPIC_DLQ": settings.topics.dlq, "BEACON_TOPIC_PARTITIONS": str(settings.topics.partitions),
        "BEACON_WORKER_GROUP": f"{settings.workers.group}-{name.split()[0]}",
        "BEACON_WORKER_WEB_PORT": str(free_port()),
        "BEACON_WORKER_PIPELINE": pipeline, "BEACON_WORKER_MAX_IN_FLIGHT": str(max_in_flight),
        "BEACON_API_URL": api_url, "BEACON_API_TOKEN": "bench-token", "BEACON_LOG_LEVEL": "WARNING",
        "BEACON_COALESCE_WINDOW_MS": "0",
        **(extra_env or {}),
    })
    if os.environ.get("BEACON_BENCH_PROFILE"):
        env["BEACON_WORKER_PROFILE"] = str(logdir / f"{name.split()[0]}.prof")
    consumer = make_consumer(settings, f"bench-reader-{uuid.uuid4().hex[:8]}")
    consumer.subscribe([settings.topics.outbound])
    log_path = logdir / f"worker-{name.split()[0]}.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen([BEACON, "worker"], env=env, stdout=log, stderr=subprocess.STDOUT)
    replies: dict[str, list[str]] = defaultdict(list)
    seen_ids: set[str] = set()
    covered = 0  # inbound messages answered: a coalesced reply answers each of its lines
    first_ts = last_ts = None
    peak_rss = 0.0
    stub_cpu0 = cpu_seconds(stub_pid) if stub_pid else None
    worker_cpu = stub_cpu = None
    deadline = time.monotonic() + timeout
    try:
        while covered < total and time.monotonic() < deadline:
            if proc.poll() is not None:
                raise BeaconError(f"the worker exited with {proc.returncode}; see {log_path}")
            for rec in consumer.consume(5000, 0.2):
                if rec.error():
                    continue
                reply = codec.decode(rec.value(), topic=settings.topics.outbound)
                if reply.id in seen_ids or reply.kind != "text":
                    continue  # a repeat, or a typing indicator (a read receipt) on a loaded machine
                seen_ids.add(reply.id)
                lines = (reply.text or "").removeprefix("You said: ").split("\n")
                replies[reply.user_id] += lines
                covered += len(lines)
                ts = rec.timestamp()[1] / 1000
                first_ts = ts if first_ts is None else min(first_ts, ts)
                last_ts = ts if last_ts is None else max(last_ts, ts)
            peak_rss = max(peak_rss, (rss_bytes(proc.pid) or 0) / 1024 / 1024)
        worker_cpu = cpu_seconds(proc.pid)
        if stub_pid and stub_cpu0 is not None:
            stub_cpu = (cpu_seconds(stub_pid) or 0.0) - stub_cpu0
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        consumer.close()
    per_user = total // users
    expected = [f"m{i}" for i in range(per_user)]
    in_order = len(replies) == users and all(texts == expected for texts in replies.values())
    seconds = (last_ts - first_ts) if first_ts is not None and last_ts is not None else 0.0
    return RunResult(name, covered, seconds, covered, in_order, peak_rss, worker_cpu, stub_cpu)


def burst_runs(settings: Settings, codec: MessageCodec, *, users: int, burst: int, window_ms: int, logdir: Path,
               max_in_flight: int, partitions: int) -> list[RunResult]:
    """The same backlog of bursts drained with coalescing off, then on (fresh topics and stub each time)."""
    results = []
    for label, window in (("off", 0), ("on", window_ms)):
        fresh = _fresh(settings, partitions)
        total = backlog(fresh, codec, users, burst)
        stub = _Stub(0.0, logdir)
        try:
            run = worker_run(f"burst{label} ({burst}/user, coalescing {label})", fresh, codec, total, users,
                             pipeline="api", api_url=stub.url, logdir=logdir, max_in_flight=max_in_flight,
                             stub_pid=stub.proc.pid, extra_env={"BEACON_COALESCE_WINDOW_MS": str(window)})
            stats = httpx.get(f"{stub.url}/_stub/stats", timeout=5).json()
            run.turns, run.http_requests = stats["calls"], stats["requests"]
            results.append(run)
        finally:
            stub.stop()
    return results


def bench(settings: Settings, *, messages: int, users: int, modes: list[str], slow_latency: float,
          slow_messages: int, max_in_flight: int, partitions: int, burst: int = 5,
          window_ms: int = 1500) -> list[RunResult]:
    """Run the baseline and the requested modes; every mode gets fresh topics and the same backlog."""
    logdir = Path(tempfile.mkdtemp(prefix="beacon-bench-worker-"))
    codec = get_codec(settings)
    results = []
    per_user = max(1, messages // users)
    fresh = _fresh(settings, partitions)
    total = backlog(fresh, codec, users, per_user)
    results.append(baseline(fresh, total))
    for mode in modes:
        if mode == "burst":
            results += burst_runs(settings, codec, users=users, burst=burst, window_ms=window_ms, logdir=logdir,
                                  max_in_flight=max_in_flight, partitions=partitions)
            continue
        fresh = _fresh(settings, partitions)
        if mode == "slow":
            slow_per_user = max(1, slow_messages // users)
            total = backlog(fresh, codec, users, slow_per_user)
        else:
            total = backlog(fresh, codec, users, per_user)
        stub = None if mode == "echo" else _Stub(slow_latency if mode == "slow" else 0.0, logdir)
        try:
            name = {"api": "api (worker -> HTTP stub API, 0 ms)", "echo": "echo (in-process pipeline, no HTTP)",
                    "slow": f"slow (HTTP stub API, {slow_latency:.1f} s per call)"}[mode]
            run = worker_run(name, fresh, codec, total, users, pipeline="echo" if mode == "echo" else "api",
                             api_url=stub.url if stub else "http://127.0.0.1:9", logdir=logdir,
                             max_in_flight=max_in_flight, stub_pid=stub.proc.pid if stub else None)
            if stub is not None:
                stats = httpx.get(f"{stub.url}/_stub/stats", timeout=5).json()
                run.turns, run.http_requests = stats["calls"], stats["requests"]
            results.append(run)
        finally:
            if stub is not None:
                stub.stop()
    print(f"logs: {logdir}")
    return results


def report(results: list[RunResult]) -> str:
    base = results[0].rate
    lines = [f"{'run':<44} {'messages':>8} {'seconds':>7} {'msg/s':>9} {'of raw':>7} {'order':>5} {'RSS':>7} "
             f"{'CPU s worker/stub':>17} {'turns/msg':>9} {'HTTP/msg':>8}"]
    for r in results:
        rss = f"{r.peak_rss_mb:.0f} MB" if r.peak_rss_mb else "-"
        share = f"{100 * r.rate / base:.2f}%" if base else "-"
        cpu = "-" if r.worker_cpu is None else f"{r.worker_cpu:.1f}/" + ("-" if r.stub_cpu is None else
                                                                         f"{r.stub_cpu:.1f}")
        turns = "-" if r.turns is None or not r.messages else f"{r.turns / r.messages:.2f}"
        http = "-" if r.http_requests is None or not r.messages else f"{r.http_requests / r.messages:.3f}"
        lines.append(f"{r.name:<44} {r.messages:>8,} {r.seconds:>7.2f} {r.rate:>9,.0f} {share:>7} "
                     f"{'ok' if r.in_order else 'NO':>5} {rss:>7} {cpu:>17} {turns:>9} {http:>8}")
    lines.append("worker CPU includes its start-up; stub CPU is measured over the run. turns/msg: turns the API "
                 "answered per message (one LLM request each when an agent answers); HTTP/msg: requests to it.")
    return "\n".join(lines)
