"""Real worker processes, a real stub API process, and Kafka helpers for the worker tests."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import httpx

from beacon.codec import MessageCodec
from beacon.config import Settings
from beacon.dlq import DeadLetterInfo, read_dlq_headers
from beacon.kafka import TopicPartition, ensure_topics, make_consumer, make_producer, topic_specs
from beacon.messages import BeaconMessage
from beacon.ops.process import free_port
from tests.local_http import local_http

BEACON = str(Path(sys.executable).with_name("beacon"))
FAUST = str(Path(sys.executable).with_name("faust"))
TOKEN = "test-service-token"


def wait_until(check: Callable[[], bool], timeout: float, what: str, interval: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


@dataclass
class Topics:
    """Fresh bm_in / bm_out / bm_dlq for one test, and settings that point at them."""

    settings: Settings
    group: str

    @classmethod
    def create(cls, base: Settings, unique: Callable[[str], str], partitions: int = 6) -> Topics:
        settings = base.replace(
            topic_in=unique("in"),
            topic_out=unique("out"),
            topic_dlq=unique("dlq"),
            topic_partitions=partitions,
            api_token=TOKEN,
        )
        ensure_topics(settings, topic_specs(settings), strict=True)
        return cls(settings, unique("workers"))


class StubApi:
    """``python -m beacon.fakes.beacon_api`` in its own process; can go down and come back."""

    def __init__(self, log_dir: Path, latency: tuple[float, float] = (0.0, 0.0), port: int | None = None) -> None:
        self.port = port or free_port()
        self.latency = latency
        self.log_dir = log_dir
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> StubApi:
        with open(self.log_dir / f"stub-{self.port}.log", "ab") as log:  # the child keeps its own descriptor
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "beacon.fakes.beacon_api", "--port", str(self.port), "--token", TOKEN,
                 "--latency-min", str(self.latency[0]), "--latency-max", str(self.latency[1])],
                stdout=log, stderr=subprocess.STDOUT, cwd=self.log_dir,
            )
        wait_until(self._healthy, 15, "the stub API to answer")
        return self

    def _healthy(self) -> bool:
        try:
            return local_http.get(self.url + "/healthz", timeout=0.5).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None

    def stats(self) -> dict[str, Any]:
        return dict(local_http.get(self.url + "/_stub/stats", timeout=5).json())


@dataclass
class Worker:
    """``beacon worker`` in its own process, configured only through BEACON_* variables."""

    settings: Settings
    group: str
    api_url: str
    log_dir: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    web_port: int = field(default_factory=free_port)
    command: list[str] = field(default_factory=lambda: [BEACON, "worker"])
    proc: subprocess.Popen[bytes] | None = None

    def env(self) -> dict[str, str]:
        s = self.settings
        env = {k: v for k, v in os.environ.items() if not k.startswith("BEACON_")}
        env.update({
            "BEACON_KAFKA_BOOTSTRAP": s.kafka.bootstrap,
            "BEACON_SCHEMA_REGISTRY_URL": s.registry.url,
            "BEACON_DATA_DIR": str(self.log_dir / "data"),
            "BEACON_TOPIC_IN": s.topics.inbound,
            "BEACON_TOPIC_OUT": s.topics.outbound,
            "BEACON_TOPIC_DLQ": s.topics.dlq,
            "BEACON_TOPIC_PARTITIONS": str(s.topics.partitions),
            "BEACON_WORKER_GROUP": self.group,
            "BEACON_WORKER_WEB_PORT": str(self.web_port),
            "BEACON_API_URL": self.api_url,
            "BEACON_API_TOKEN": TOKEN,
            "BEACON_WORKER_SESSION_TIMEOUT": "6",
            "BEACON_WORKER_TYPING_DELAY": "0",  # no typing receipts among the replies unless a test wants them
            "BEACON_LOG_LEVEL": "INFO",
        })
        env.update(self.extra_env)
        return env

    @property
    def log_path(self) -> Path:
        return self.log_dir / f"worker-{self.web_port}.log"

    def start(self) -> Worker:
        with open(self.log_path, "ab") as log:  # the child keeps its own descriptor
            self.proc = subprocess.Popen(self.command, env=self.env(), stdout=log, stderr=subprocess.STDOUT,
                                         cwd=self.log_dir)
        return self

    def metrics(self) -> dict[str, float]:
        """The worker's Prometheus samples as ``name{labels}`` -> value ({} when not up)."""
        try:
            text = local_http.get(f"http://127.0.0.1:{self.web_port}/metrics", timeout=2).text
        except httpx.HTTPError:
            return {}
        samples = {}
        for line in text.splitlines():
            m = re.match(r"^([a-zA-Z_:][\w:]*(?:\{[^}]*\})?) (\S+)$", line)
            if m:
                samples[m.group(1)] = float(m.group(2))
        return samples

    def metric(self, name: str) -> float:
        return self.metrics().get(name, 0.0)

    def wait_assigned(self, timeout: float = 60) -> None:
        wait_until(lambda: self.metric("beacon_worker_assigned_partitions") > 0, timeout,
                   f"worker on port {self.web_port} to get partitions (log: {self.log_path})", interval=0.3)

    def signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait(self, timeout: float) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def produce(settings: Settings, messages: Iterable[BeaconMessage], codec: MessageCodec) -> int:
    """Produce BeaconMessages to bm_in keyed by user, in order; returns how many."""
    producer = make_producer(settings, **{"linger.ms": 5})
    n = 0
    for msg in messages:
        producer.produce(settings.topics.inbound, codec.encode(msg, settings.topics.inbound), key=msg.user_key)
        n += 1
        if n % 5000 == 0:
            producer.poll(0)
    assert producer.flush(30) == 0
    return n


def produce_raw(settings: Settings, key: bytes, value: bytes) -> None:
    producer = make_producer(settings)
    producer.produce(settings.topics.inbound, value, key=key)
    assert producer.flush(10) == 0


class Collector:
    """Reads a topic from the beginning and keeps what it saw (replies decoded, DLQ records raw)."""

    def __init__(self, settings: Settings, topic: str, codec: MessageCodec | None) -> None:
        self.topic = topic
        self.codec = codec
        self.consumer = make_consumer(settings, f"collector-{topic}")
        self.consumer.subscribe([topic])
        self.replies: list[BeaconMessage] = []
        self.dead: list[tuple[bytes | None, bytes | None, DeadLetterInfo | None]] = []

    def poll(self, seconds: float = 0.5) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            batch = self.consumer.consume(5000, 0.1)
            for rec in batch:
                if rec.error():
                    continue
                if self.codec is not None:
                    self.replies.append(self.codec.decode(rec.value(), topic=self.topic))
                else:
                    headers = cast(list[tuple[str, bytes | None]] | None, rec.headers())
                    self.dead.append((rec.key(), rec.value(), read_dlq_headers(headers)))

    def unique_replies(self) -> list[BeaconMessage]:
        """Replies deduplicated by id, first occurrence kept (the gateway does the same)."""
        seen: set[str] = set()
        out = []
        for r in self.replies:
            if r.id not in seen:
                seen.add(r.id)
                out.append(r)
        return out

    def wait_replies(self, count: int, timeout: float, workers: list[Worker] | None = None) -> list[BeaconMessage]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.poll(0.3)
            if len({r.reply_to_id for r in self.replies}) >= count:
                return self.unique_replies()
            for w in workers or []:
                if w.proc is not None and w.proc.poll() is not None:
                    raise AssertionError(f"worker exited with {w.proc.returncode}: {w.log()[-3000:]}")
        logs = "\n".join(w.log()[-3000:] for w in workers or [])
        raise AssertionError(
            f"only {len({r.reply_to_id for r in self.replies})} of {count} messages answered; logs:\n{logs}"
        )

    def answered(self) -> int:
        """How many inbound messages have at least one reply so far."""
        self.poll(0.2)
        return len({r.reply_to_id for r in self.replies})

    def catch_up(self, timeout: float = 30) -> None:
        """Poll until this collector has read everything on its topic up to now (every partition's end)."""
        md = self.consumer.list_topics(self.topic, timeout=10)
        tps = [TopicPartition(self.topic, p) for p in md.topics[self.topic].partitions]
        ends = {tp.partition: int(self.consumer.get_watermark_offsets(tp, timeout=10)[1] or 0) for tp in tps}

        def read_all() -> bool:
            self.poll(0.2)
            if {tp.partition for tp in self.consumer.assignment()} != set(ends):
                return False
            positions = self.consumer.position(tps)
            return all(ends[tp.partition] == 0 or tp.offset >= ends[tp.partition] for tp in positions)

        wait_until(read_all, timeout, f"the collector to read {self.topic} to its end", interval=0)

    def wait_dead(self, count: int, timeout: float) -> None:
        def enough() -> bool:
            self.poll(0.3)
            return len(self.dead) >= count

        wait_until(enough, timeout, f"{count} dead letters")

    def close(self) -> None:
        self.consumer.close()


def committed_and_end(settings: Settings, group: str) -> tuple[int, int]:
    """Sum of the group's committed offsets on bm_in, and sum of its end offsets."""
    consumer = make_consumer(settings, group)
    try:
        md = consumer.list_topics(settings.topics.inbound, timeout=10)
        tps = [TopicPartition(settings.topics.inbound, p) for p in md.topics[settings.topics.inbound].partitions]
        committed = consumer.committed(tps, timeout=10)
        total_committed = sum(max(tp.offset, 0) for tp in committed)
        total_end = sum(int(consumer.get_watermark_offsets(tp, timeout=10)[1] or 0) for tp in tps)
        return total_committed, total_end
    finally:
        consumer.close()


class RealApi:
    """``beacon api`` in its own process on SQLite; can be stopped and started again on the same port."""

    def __init__(self, settings: Settings, data_dir: Path) -> None:
        self.port = free_port()
        self.data_dir = data_dir
        self.proc: subprocess.Popen[bytes] | None = None
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("BEACON_")}
        self.env.update({
            "BEACON_DATA_DIR": str(data_dir / "api"),
            "BEACON_DATABASE_URL": f"sqlite+aiosqlite:///{data_dir / 'api.db'}",
            "BEACON_API_TOKEN": TOKEN,
            "BEACON_API_PORT": str(self.port),
            "BEACON_KAFKA_BOOTSTRAP": settings.kafka.bootstrap,
            "BEACON_SCHEMA_REGISTRY_URL": settings.registry.url,
            "BEACON_TOPIC_OUT": settings.topics.outbound,
        })
        (data_dir / "api").mkdir(exist_ok=True)
        subprocess.run([BEACON, "api", "migrate"], env=self.env, cwd=data_dir, check=True, capture_output=True,
                       timeout=60)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "api.log"

    def start(self) -> RealApi:
        with open(self.log_path, "ab") as log:  # the child keeps its own descriptor
            self.proc = subprocess.Popen([BEACON, "api"], env=self.env, cwd=self.data_dir, stdout=log,
                                         stderr=subprocess.STDOUT)
        proc = self.proc

        def ready() -> bool:
            try:
                return local_http.get(self.url + "/readyz", timeout=0.5).status_code == 200
            except httpx.HTTPError:
                return proc.poll() is not None  # exited: stop waiting, fail below

        wait_until(ready, 90, "the API to start")  # a loaded 2-core machine imports slowly
        assert proc.poll() is None, self.log_path.read_text()[-3000:]
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(15)
        self.proc = None


class SteadyProducer:
    """Produces texts of ``users`` users in turn to bm_in from a thread, until stopped: ``m0``, ``m1``, ..."""

    def __init__(self, settings: Settings, codec: MessageCodec, users: int, prefix: str, per_second: float) -> None:
        self.settings = settings
        self.codec = codec
        self.users = users
        self.prefix = prefix
        self.interval = 1 / per_second
        self.sent: list[BeaconMessage] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> SteadyProducer:
        self._thread.start()
        return self

    def _run(self) -> None:
        producer = make_producer(self.settings, **{"linger.ms": 5})
        n = 0
        while not self._stop.is_set():
            u, i = n % self.users, n // self.users
            msg = BeaconMessage.inbound_text(channel="whatsapp", account="100", user_id=f"{self.prefix}{u}",
                                             text=f"m{i}", channel_message_id=f"wamid.{self.prefix}{u}.{i}")
            producer.produce(self.settings.topics.inbound, self.codec.encode(msg, self.settings.topics.inbound),
                             key=msg.user_key)
            producer.poll(0)
            self.sent.append(msg)
            n += 1
            self._stop.wait(self.interval)
        assert producer.flush(30) == 0

    def stop(self) -> list[BeaconMessage]:
        """Stop producing; every message produced so far, once the broker acknowledged them all."""
        self._stop.set()
        self._thread.join(60)
        return self.sent


class TcpProxy:
    """A TCP forwarder in a thread: lets a test take a service away from a worker and give it back."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = free_port()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> TcpProxy:
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            self._server = loop.run_until_complete(asyncio.start_server(self._serve, "127.0.0.1", self.port))
            ready.set()
            loop.run_forever()
            loop.close()

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        ready.wait(5)
        return self

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.close()
            return

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (OSError, asyncio.CancelledError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def stop(self) -> None:
        loop = self._loop
        if loop is None:
            return
        asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(5)
        self._loop = self._server = None


def all_committed(settings: Settings, group: str) -> bool:
    """True when the group's committed offsets reached the end of every partition of bm_in."""
    committed, end = committed_and_end(settings, group)
    return committed == end


def committed_offsets(settings: Settings, group: str) -> dict[int, int]:
    """The group's committed offset per partition of bm_in (-1 when none)."""
    consumer = make_consumer(settings, group)
    try:
        md = consumer.list_topics(settings.topics.inbound, timeout=10)
        tps = [TopicPartition(settings.topics.inbound, p) for p in md.topics[settings.topics.inbound].partitions]
        return {tp.partition: (tp.offset if tp.offset >= 0 else -1) for tp in consumer.committed(tps, timeout=10)}
    finally:
        consumer.close()


def find_record(settings: Settings, key: bytes) -> tuple[int, int]:
    """Partition and offset of the first record on bm_in with ``key``."""
    consumer = make_consumer(settings, f"finder-{time.monotonic_ns()}")
    consumer.subscribe([settings.topics.inbound])
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            for rec in consumer.consume(1000, 0.5):
                if not rec.error() and rec.key() == key:
                    return int(rec.partition() or 0), int(rec.offset() or 0)
        raise AssertionError(f"no record with key {key!r} on {settings.topics.inbound}")
    finally:
        consumer.close()
