"""The Faust app of Beacon's workers: one agent on bm_in, manual acknowledgement, keyed dispatch.

The agent reads raw records (key and value bytes) with ``stream.noack()`` and hands each to the
:class:`~beacon.lanes.KeyedDispatcher`: strictly sequential per user key, concurrent
across keys up to ``BEACON_WORKER_MAX_IN_FLIGHT``. A record is done only after its replies were
acknowledged on bm_out or it went to bm_dlq; the dispatcher then acks events in offset order per
partition, and Faust's committer (every ``BEACON_WORKER_COMMIT_INTERVAL``) commits the offset the
dispatcher reports as safe: up to the lowest unfinished message, never past it.

Faust's aiokafka consumer runs on the worker's own event loop (``beacon.streams.consumer``), not in
the thread faust-streaming gives it: fetches and commits are direct awaits.

Decoding happens in the processor, not in a Faust codec, so undecodable bytes are dead-lettered
with their partition and offset instead of being skipped by Faust.

Outages: while the runtime's :class:`~beacon.streams.health.DependencyHealth` has a dependency (the
API) down, the dispatcher admits no new job, so the agent stops taking events: Faust's stream buffer
fills and Faust stops fetching those partitions (its own backpressure), whatever the assignment.
When the dependency is back, jobs are admitted and fetching resumes. Faust's ``pause_partitions``
is not used: in faust-streaming 0.15.3, pausing every partition while a fetch is in flight hands
that fetch an empty partition set, which aiokafka reads as "all partitions", and Faust then drops
the records of the paused ones, so the consumer's position moves past messages never processed.

Revocation and shutdown: Faust calls ``_consumer_wait_empty`` while partitions are being revoked
and while stopping (after fetching stopped). Beacon's app lets running work finish there within
``BEACON_WORKER_REBALANCE_TIMEOUT`` / ``BEACON_WORKER_SHUTDOWN_TIMEOUT``, abandons the rest
(processed again by the next owner, with the same reply ids) and commits what is finished.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import faust
from faust.types import TP
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from beacon import otel
from beacon.codec import get_codec
from beacon.config import Settings
from beacon.kafka import AsyncProducer
from beacon.kafka_security import faust_credentials
from beacon.lanes import Job, KeyedDispatcher
from beacon.logs import quiet_repeats
from beacon.streams.coalesce import Coalescer
from beacon.streams.consumer import LoopTransport
from beacon.streams.health import DependencyHealth
from beacon.streams.metrics import WorkerMetrics
from beacon.streams.processor import MessageProcessor, Record, echo_pipeline
from beacon.trace import now_ms

log = logging.getLogger("beacon.streams")

AGENT_NAME = "beacon.streams.process"


class WorkerRuntime:
    """What one worker process holds: codec, producer, processor and dispatcher."""

    def __init__(self, settings: Settings, metrics: WorkerMetrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.codec = get_codec(settings)
        self.producer = AsyncProducer(settings)
        self.health = DependencyHealth(
            metrics, probe_base_delay=settings.workers.retry_base_delay,
            probe_max_delay=settings.workers.api_probe_max_delay, waiting=lambda: self.dispatcher.in_flight,
        )
        self.dispatcher = KeyedDispatcher(
            self._handle, self._ack, settings.workers.max_in_flight, on_change=metrics.in_flight.set,
            admit=self.health.wait_all_up,
        )
        pipeline = echo_pipeline if settings.workers.pipeline == "echo" else None
        self.processor = MessageProcessor(settings, self.codec, self.producer, metrics, self.health,
                                          pipeline=pipeline)
        window = settings.coalesce_window()
        self.coalescer = None if window is None else Coalescer(self.dispatcher, self.processor, window, _record)
        self.started = False

    async def start(self) -> None:
        if self.started:
            return
        self.started = True
        # Registry outage at start-up: wait it out (logged) rather than fail every message.
        await self.processor.with_registry(self.codec.prepare, [self.settings.topics.outbound])
        window = self.settings.coalesce_window()
        log.info("worker ready: %s -> API %s -> %s (max %d in flight, pipeline %s, coalescing %s)",
                 self.settings.topics.inbound, self.settings.api.url, self.settings.topics.outbound,
                 self.settings.workers.max_in_flight, self.settings.workers.pipeline,
                 "off" if window is None else f"within {window * 1000:.0f} ms")

    async def _handle(self, job: Job) -> list[Job] | None:
        if self.coalescer is not None:
            return await self.coalescer.handle(job)
        await self.processor.handle(_record(job), job.started)
        return None

    @staticmethod
    def _ack(job: Job) -> None:
        job.payload.ack()

    async def drain(self, app: BeaconApp, timeout: float) -> None:
        """Finish in-flight work within ``timeout``, abandon the rest, commit what is finished."""
        running, in_flight = self.dispatcher.running, self.dispatcher.in_flight
        if not self.health.all_up:
            # Running work is waiting for a dependency: nothing will finish by waiting, so hand it to the
            # next owner at once instead of holding up the rebalance.
            timeout = min(timeout, 0.5)
        if in_flight:
            log.info("finishing %d running message(s) (up to %.0fs); %d queued behind them are left to be "
                     "fetched again", running, timeout, in_flight - running)
        offsets = await self.dispatcher.drain(None, timeout)
        consumer: Any = app.consumer  # Faust's driver consumer: _commit commits exact offsets
        assigned = consumer.assignment()
        committable = {tp: off for tp, off in offsets.items() if tp in assigned}
        if committable:
            try:
                await consumer._commit(committable)
            except Exception as exc:  # the group may have moved on; the next owner reprocesses (idempotent)
                log.warning("committing finished offsets failed (%s); those messages will be processed again", exc)

    async def close(self) -> None:
        await self.health.close()
        await self.processor.close()
        self.producer.close()


def _record(job: Job) -> Record:
    """The job's Kafka record with its timestamp, headers and when it was fetched (``beacon.trace``'s hops)."""
    message = job.payload.message
    fetched_ms = now_ms() - (time.monotonic() - job.started) * 1000
    headers = message.headers
    return Record(message.topic, message.partition, message.offset, message.key, message.value,
                  message.timestamp * 1000 if message.timestamp else None,
                  list(headers.items()) if isinstance(headers, dict) else headers, fetched_ms)


class BeaconApp(faust.App):
    """faust.App with Beacon's commit offsets and its bounded drain on revocation and shutdown."""

    runtime: WorkerRuntime | None = None
    beacon_settings: Settings

    def _new_transport(self) -> Any:
        # Faust's aiokafka transport, its consumer on this app's loop instead of a thread of its own.
        return LoopTransport(self.conf.broker_consumer, self)

    def _new_consumer(self) -> Any:
        consumer: Any = super()._new_consumer()

        def filter_committable_offsets(tps: Any) -> dict[TP, int]:
            # Faust's committer asks which offset to commit per partition; the dispatcher's
            # trackers answer (every message below is finished). Faust's own scan of acked
            # offsets is bypassed: it has an off-by-one against the committed offset, and it
            # counts messages Faust skipped (and auto-acked) during a rebalance as done.
            runtime = self.runtime
            safe = runtime.dispatcher.committable() if runtime is not None else {}
            offsets = {}
            for tp in tps:
                consumer._acked.pop(tp, None)
                consumer._acked_index.pop(tp, None)
                offset = safe.get(tp)
                if offset is not None and consumer._should_commit(tp, offset):
                    offsets[tp] = offset
            return offsets

        consumer._filter_committable_offsets = filter_committable_offsets
        return consumer

    async def _consumer_wait_empty(self, consumer: Any, logger: Any) -> None:
        runtime = self.runtime
        if runtime is None or not runtime.started:
            return
        s = self.beacon_settings
        timeout = s.workers.shutdown_timeout if self.should_stop else s.workers.rebalance_timeout
        await runtime.drain(self, timeout)


def create_app(settings: Settings) -> BeaconApp:
    """The worker app for ``settings``: broker, group, topics, ports and limits all come from there."""
    datadir = (settings.data_dir / "faust").resolve()
    datadir.mkdir(parents=True, exist_ok=True)
    # aiokafka logs an error per retry (every 100 ms) while a broker is gone: once per change is enough.
    quiet_repeats()
    otel.setup(settings, "worker")
    brokers = [f"kafka://{server.strip()}" for server in settings.kafka.bootstrap.split(",") if server.strip()]
    app = BeaconApp(
        settings.workers.group,
        broker=brokers,
        key_serializer="raw",
        value_serializer="raw",
        web_port=settings.workers.web_port,
        web_bind=settings.workers.web_host,
        web_host=settings.workers.web_host,
        datadir=str(datadir),
        broker_session_timeout=settings.workers.session_timeout,
        broker_heartbeat_interval=max(1.0, settings.workers.session_timeout / 5),
        broker_commit_interval=settings.workers.commit_interval,
        broker_request_timeout=max(settings.kafka.request_timeout * 6, settings.workers.session_timeout * 3),
        stream_wait_empty=False,
        topic_partitions=settings.topics.partitions,
        topic_replication_factor=settings.topics.replication_factor,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        broker_credentials=faust_credentials(settings),
    )
    app.beacon_settings = settings
    metrics = WorkerMetrics()
    topic = app.topic(settings.topics.inbound, key_type=bytes, value_type=bytes,
                      key_serializer="raw", value_serializer="raw")

    def runtime() -> WorkerRuntime:
        if app.runtime is None:
            app.runtime = WorkerRuntime(settings, metrics)
        return app.runtime

    @app.agent(topic, name=AGENT_NAME)
    async def process(stream: Any) -> None:
        rt = runtime()
        await rt.start()
        submit = rt.dispatcher.submit
        async for event in stream.noack().events():
            message = event.message
            key = message.key if message.key is not None else (message.tp, message.offset)
            await submit(Job(key, message.tp, message.offset, event, time.monotonic()))

    async def close_runtime(sender: Any, *args: Any, signal: Any = None, **kwargs: Any) -> None:
        if app.runtime is not None:
            await app.runtime.close()

    app.on_before_shutdown.connect(close_runtime)  # type: ignore[arg-type]  # mode's stub rejects async def

    @app.page("/metrics")
    async def metrics_page(web: Any, request: Any) -> Any:
        _update_lag(app, metrics)
        return web.bytes(generate_latest(metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    @app.page("/healthz")
    async def healthz(web: Any, request: Any) -> Any:
        return web.json({"status": "ok", "in_flight": app.runtime.dispatcher.in_flight if app.runtime else 0})

    return app


def _update_lag(app: BeaconApp, metrics: WorkerMetrics) -> None:
    """Lag per assigned partition: high watermark minus the lowest unfinished offset."""
    consumer: Any = app.consumer
    try:
        assigned: set[TP] = set(consumer.assignment())
    except Exception:  # consumer not started yet
        return
    metrics.assigned.set(len(assigned))
    metrics.lag.clear()
    trackers = app.runtime.dispatcher.trackers() if app.runtime else {}
    for tp in assigned:
        try:
            high = consumer.highwater(tp)
        except Exception:
            continue
        if high is None:
            continue
        tracker = trackers.get(tp)
        low = None
        if tracker is not None:
            low = tracker.lowest_unfinished
            if low is None and tracker.last_offset is not None:
                low = tracker.last_offset + 1
        if low is None:
            low = consumer._committed_offset.get(tp) or high
        metrics.lag.labels(tp.topic, str(tp.partition)).set(max(0, high - low))
