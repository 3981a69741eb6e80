"""The one place that wraps confluent-kafka: producers, consumers and the admin client with
Beacon's defaults, an asyncio-friendly producer, and topic creation.

Defaults: ``acks=all`` with idempotence (no duplicates or reordering from producer retries),
a short linger (latency over batching, still batching under load), fetches the broker answers as
soon as a record arrives (and holds up to 500 ms while there is none), and error/delivery callbacks
that log what happened in words an operator can act on. Faust's own aiokafka clients are configured
by ``beacon.streams``; everything else goes through here.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_END,
    Consumer,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from confluent_kafka import KafkaError as _CKafkaError
from confluent_kafka.admin import (  # type: ignore[attr-defined]  # documented names, not in its __all__
    AdminClient,
    ConfigResource,
    NewTopic,
    ResourceType,
)

from beacon.config import Settings
from beacon.errors import KafkaAuthenticationError, KafkaError, TopicMismatchError
from beacon.kafka_security import describe_listener, librdkafka_security

__all__ = [
    "OFFSET_BEGINNING",
    "OFFSET_END",
    "AsyncProducer",
    "Consumer",
    "ErrorReporter",
    "KafkaException",
    "Message",
    "Producer",
    "TopicPartition",
    "TopicReport",
    "broker_ready",
    "ensure_topics",
    "fetch_batch",
    "fetch_wanted",
    "kafka_error",
    "make_admin",
    "make_consumer",
    "make_producer",
    "partition_leaders",
    "registered_brokers",
]

log = logging.getLogger("beacon.kafka")

Headers = list[tuple[str, bytes]]


#: Codes of requests the brokers refuse every time (authentication and authorization, sizes, invalid
#: arguments, unsupported features, a fenced producer): retrying cannot help, the operator must act.
#: Anything else (a broker down, a leader moving, a timeout) is an outage and is waited out.
PERMANENT_CODES = frozenset({
    _CKafkaError._AUTHENTICATION, _CKafkaError._SSL, _CKafkaError.SASL_AUTHENTICATION_FAILED,
    _CKafkaError.UNSUPPORTED_SASL_MECHANISM, _CKafkaError.ILLEGAL_SASL_STATE,
    _CKafkaError.TOPIC_AUTHORIZATION_FAILED, _CKafkaError.GROUP_AUTHORIZATION_FAILED,
    _CKafkaError.CLUSTER_AUTHORIZATION_FAILED, _CKafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
    _CKafkaError.MSG_SIZE_TOO_LARGE, _CKafkaError.RECORD_LIST_TOO_LARGE, _CKafkaError.INVALID_RECORD,
    _CKafkaError.INVALID_CONFIG, _CKafkaError.INVALID_REQUIRED_ACKS, _CKafkaError.INVALID_PARTITIONS,
    _CKafkaError.INVALID_REPLICATION_FACTOR, _CKafkaError.TOPIC_EXCEPTION, _CKafkaError.POLICY_VIOLATION,
    _CKafkaError._INVALID_ARG, _CKafkaError._INVALID_TYPE, _CKafkaError._UNSUPPORTED_FEATURE,
    _CKafkaError._NOT_IMPLEMENTED, _CKafkaError.UNSUPPORTED_VERSION, _CKafkaError._KEY_SERIALIZATION,
    _CKafkaError._VALUE_SERIALIZATION, _CKafkaError._FENCED, _CKafkaError.PRODUCER_FENCED,
})


def kafka_error(message: str, err: _CKafkaError | None, cls: type[KafkaError] = KafkaError) -> KafkaError:
    """A :class:`KafkaError` carrying librdkafka's ``err``: its code, whether it is fatal, and whether it is
    retryable (not fatal, and librdkafka calls it retriable or its code is not a refusal: PERMANENT_CODES)."""
    if err is None:
        return cls(message)
    code, fatal = err.code(), err.fatal()
    retryable = not fatal and (err.retriable() or code not in PERMANENT_CODES)
    return cls(message, code=code, fatal=fatal, retryable=retryable)


def _error_of(exc: KafkaException) -> _CKafkaError | None:
    """The confluent-kafka error a KafkaException carries (its first argument), if any."""
    err = exc.args[0] if exc.args else None
    return err if isinstance(err, _CKafkaError) else None


class ErrorReporter:
    """A client's ``error_cb``: client-level errors (broker down, authentication) logged in words, once
    per change of state, never raised from librdkafka's thread. An authentication or TLS failure is
    remembered, so callers turn their next failure into :class:`KafkaAuthenticationError` at once."""

    def __init__(self, settings: Settings) -> None:
        self.listener = describe_listener(settings)
        self.auth_failure: str | None = None
        self._last: int | None = None

    def __call__(self, err: _CKafkaError) -> None:
        code = err.code()
        repeated, self._last = code == self._last, code
        if code in (_CKafkaError._AUTHENTICATION, _CKafkaError._SSL):
            first = self.auth_failure is None
            self.auth_failure = (
                f"Kafka refused Beacon's connection to {self.listener}: {err.str()}. Check "
                "BEACON_KAFKA_SECURITY_PROTOCOL, BEACON_KAFKA_SASL_MECHANISM, BEACON_KAFKA_SASL_USERNAME / _PASSWORD "
                "and BEACON_KAFKA_SSL_* "
                "(`beacon config show`)."
            )
            if first:
                log.critical("%s", self.auth_failure)
        elif repeated:
            return
        elif code == _CKafkaError._ALL_BROKERS_DOWN and self.auth_failure is not None:
            return  # the brokers are up and refused us: said above, once
        elif code == _CKafkaError._ALL_BROKERS_DOWN:
            log.error("Kafka: all brokers at %s are down or unreachable (%s). Is the broker running? See "
                      "`beacon kafka status`.", self.listener, err)
        elif err.fatal():
            log.critical("Kafka: fatal client error: %s. The client must be recreated.", err)
        else:
            log.warning("Kafka: %s", err)

    def raise_if_refused(self) -> None:
        """Raise KafkaAuthenticationError when the brokers refused the credentials or certificate."""
        if self.auth_failure is not None:
            raise KafkaAuthenticationError(self.auth_failure)


def common_config(settings: Settings, reporter: ErrorReporter | None = None) -> dict[str, Any]:
    """What every client shares: the bootstrap servers, security (:mod:`beacon.kafka_security`), timeouts
    and error reporting."""
    return {
        "bootstrap.servers": settings.kafka.bootstrap,
        **librdkafka_security(settings),
        "error_cb": reporter if reporter is not None else ErrorReporter(settings),
        "socket.connection.setup.timeout.ms": int(settings.kafka.request_timeout * 1000),
        "reconnect.backoff.max.ms": 2000,
        # librdkafka's own lines go through logging (one format) rather than raw stderr; only its critical
        # ones: error_cb above already reports errors (broker down, ...) in words, once.
        "logger": logging.getLogger("beacon.librdkafka"),
        "log_level": 2,
    }


def make_producer(settings: Settings, **overrides: Any) -> Producer:
    """A producer with acks=all and idempotence; ``overrides`` are librdkafka settings (an ``error_cb``
    ErrorReporter of the caller's own included)."""
    config: dict[str, Any] = {
        **common_config(settings),
        "acks": "all",
        "enable.idempotence": True,
        "linger.ms": settings.kafka.linger_ms,
        "compression.type": "lz4",
        "message.timeout.ms": max(int(settings.kafka.request_timeout * 1000), 1000),
        "request.timeout.ms": max(int(settings.kafka.request_timeout * 1000), 1000),
    }
    config.update(overrides)
    return Producer(config)


def make_consumer(settings: Settings, group: str, **overrides: Any) -> Consumer:
    """A consumer in ``group`` that never commits on its own: callers store or commit offsets
    only after a message is settled."""
    config: dict[str, Any] = {
        **common_config(settings),
        "group.id": group,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        # How long the broker holds a fetch while it has nothing new (with fetch.min.bytes 1 it answers as soon
        # as a record arrives, so this costs no latency): an idle gateway used 0.014-0.015 cores at 20 ms, 0.008-
        # 0.009 at 500 (fewer empty fetches), with the same bm_out -> gateway fetch p50 (8.5-9.8 ms at 20/s).
        "fetch.wait.max.ms": 500,
        "fetch.min.bytes": 1,
        "session.timeout.ms": 10000,
        "heartbeat.interval.ms": 1000,
        "partition.assignment.strategy": "cooperative-sticky",
    }
    config.update(overrides)
    return Consumer(config)


def fetch_batch(consumer: Consumer, max_messages: int, timeout: float) -> list[Message]:
    """Up to ``max_messages`` records, returned as soon as one is there (or after ``timeout``).

    ``Consumer.consume(n, timeout)`` waits for the whole timeout unless ``n`` records arrive, which
    adds that timeout to every message's latency when traffic is light; a poll for the first record
    followed by a non-blocking consume of what is already fetched does not.
    """
    first = consumer.poll(timeout)
    if first is None:
        return []
    return [first, *consumer.consume(max_messages - 1, 0)] if max_messages > 1 else [first]


def fetch_wanted(consumer: Consumer, max_messages: int, timeout: float, wanted: Callable[[Message], bool],
                 out: list[Message] | None = None) -> list[Message]:
    """Up to ``max_messages`` records appended to ``out`` (a new list by default) in the order fetched and
    returned, as soon as one of them is ``wanted`` (or when ``max_messages`` are there, or after ``timeout``).

    Records ``wanted`` refuses (another consumer's work, for the caller to skip) are returned too, but do not
    end the wait: a consumer that skips most of what it reads wakes its caller about every ``timeout``
    rather than once per record. Each record is in ``out`` as soon as it is fetched, so a rebalance callback
    (run inside ``poll``/``consume``) can take out those of the partitions it revokes before anyone sees them.
    """
    deadline = time.monotonic() + timeout
    out = [] if out is None else out
    while len(out) < max_messages:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        first = consumer.poll(remaining)
        if first is None:
            break
        out.append(first)
        more = consumer.consume(max_messages - len(out), 0) if len(out) < max_messages else []
        out += more
        if wanted(first) or any(wanted(record) for record in more):
            break
    return out


def make_admin(settings: Settings, reporter: ErrorReporter | None = None) -> AdminClient:
    return AdminClient(common_config(settings, reporter))


def broker_ready(bootstrap: str, timeout: float = 2.0, settings: Settings | None = None) -> bool:
    """True when a broker at ``bootstrap`` answers a metadata request within ``timeout``."""
    return registered_brokers(bootstrap, timeout, settings) > 0


def registered_brokers(bootstrap: str, timeout: float = 2.0, settings: Settings | None = None) -> int:
    """How many brokers the cluster at ``bootstrap`` lists as available (registered, not fenced); 0 when
    none answers within ``timeout``. With ``settings``, the probe uses their security settings."""
    # A probe expects refusals while a broker starts: it says nothing (log_level 0), it only answers.
    security = librdkafka_security(settings) if settings is not None else {}
    admin = AdminClient({"bootstrap.servers": bootstrap, "socket.connection.setup.timeout.ms": int(timeout * 1000),
                         "log_level": 0, **security})
    try:
        md = admin.list_topics(timeout=timeout)
    except KafkaException:
        return 0
    return len(md.brokers)


def partition_leaders(settings: Settings, topic: str) -> dict[int, int]:
    """Partition -> id of the broker leading it (-1 while it has none), from fresh metadata."""
    admin = make_admin(settings)
    try:
        md = admin.list_topics(topic, timeout=settings.kafka.request_timeout)
    except KafkaException as exc:
        raise kafka_error(f"cannot read metadata of {topic} from {settings.kafka.bootstrap}: {exc}",
                          _error_of(exc)) from exc
    meta = md.topics.get(topic)
    if meta is None or meta.error is not None:
        raise kafka_error(f"topic {topic} does not exist on {settings.kafka.bootstrap}",
                          meta.error if meta is not None else None)
    return {p: part.leader for p, part in meta.partitions.items()}


class AsyncProducer:
    """A confluent-kafka producer for asyncio code: ``await produce(...)`` returns when the broker
    acknowledged the message (or raises KafkaError). A background thread serves callbacks."""

    def __init__(self, settings: Settings, **overrides: Any) -> None:
        self.reporter = ErrorReporter(settings)
        self._producer = make_producer(settings, **overrides, error_cb=self.reporter)
        self._timeout = settings.kafka.request_timeout
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._poll_loop, name="kafka-producer-poll", daemon=True)
        self._thread.start()

    def _poll_loop(self) -> None:
        while not self._closed.is_set():
            self._producer.poll(0.05)

    def produce_nowait(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | str | None = None,
        headers: Headers | None = None,
        partition: int | None = None,
    ) -> asyncio.Future[Message]:
        """Queue one message; the returned future resolves with the acknowledged Message."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Message] = loop.create_future()
        if self.reporter.auth_failure is not None:  # fail fast: waiting for the delivery timeout cannot help
            future.set_exception(KafkaAuthenticationError(self.reporter.auth_failure))
            return future
        reporter = self.reporter

        def on_delivery(err: _CKafkaError | None, msg: Message) -> None:
            loop.call_soon_threadsafe(_settle, future, err, msg, topic, reporter)

        kwargs: dict[str, Any] = {"value": value, "key": key, "on_delivery": on_delivery}
        if headers:
            kwargs["headers"] = headers
        if partition is not None:
            kwargs["partition"] = partition
        try:
            self._producer.produce(topic, **kwargs)
        except BufferError as exc:
            future.set_exception(KafkaError(f"producer queue full while producing to {topic}: {exc}"))
        except KafkaException as exc:
            future.set_exception(kafka_error(f"producing to {topic} failed: {exc}", _error_of(exc)))
        return future

    async def produce(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | str | None = None,
        headers: Headers | None = None,
        partition: int | None = None,
    ) -> Message:
        """Produce and wait for the broker's acknowledgement."""
        return await self.produce_nowait(topic, value, key, headers, partition)

    async def flush(self, timeout: float | None = None) -> int:
        """Wait until queued messages are delivered; returns how many are still queued."""
        return await asyncio.to_thread(self._producer.flush, self._timeout if timeout is None else timeout)

    def close(self, timeout: float = 10.0) -> None:
        self._producer.flush(timeout)
        self._closed.set()
        self._thread.join(timeout=2)


def _settle(future: asyncio.Future[Message], err: _CKafkaError | None, msg: Message, topic: str,
            reporter: ErrorReporter) -> None:
    if future.done():
        return
    if err is not None and reporter.auth_failure is not None:
        future.set_exception(KafkaAuthenticationError(reporter.auth_failure))
    elif err is not None:
        future.set_exception(kafka_error(f"broker did not acknowledge a message for {topic}: {err.str()}", err))
    else:
        future.set_result(msg)


# --- topics ------------------------------------------------------------------------------------


@dataclass
class TopicReport:
    """What ``ensure_topics`` did: topics created, topics already right, and mismatches."""

    created: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    mismatches: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.created)


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    replication_factor: int
    config: dict[str, str]


def topic_specs(settings: Settings) -> list[TopicSpec]:
    """The topics Beacon needs, from settings."""
    base: dict[str, str] = {}
    if settings.topics.min_insync_replicas:
        base["min.insync.replicas"] = str(settings.topics.min_insync_replicas)
    main = {**base, "retention.ms": str(settings.topics.retention_ms)}
    dlq = {**base, "retention.ms": str(settings.topics.dlq_retention_ms)}
    rf = settings.topics.replication_factor
    parts = settings.topics.partitions
    return [
        TopicSpec(settings.topics.inbound, parts, rf, main),
        TopicSpec(settings.topics.outbound, parts, rf, main),
        TopicSpec(settings.topics.dlq, parts, rf, dlq),
    ]


def ensure_topics(
    settings: Settings, specs: Iterable[TopicSpec] | None = None, *, strict: bool = False
) -> TopicReport:
    """Create missing topics and check existing ones against the specs.

    Idempotent. A mismatch (fewer partitions than configured, another replication factor or
    retention) is reported in words; with ``strict`` it raises TopicMismatchError.
    """
    specs = list(specs if specs is not None else topic_specs(settings))
    reporter = ErrorReporter(settings)
    admin = make_admin(settings, reporter)
    timeout = settings.kafka.request_timeout
    try:
        existing = _list_topics(admin, reporter, timeout).topics
    except KafkaException as exc:
        raise KafkaError(
            f"cannot reach Kafka at {settings.kafka.bootstrap} within {timeout:.0f}s ({exc}). "
            "Is the broker running? Start it with `beacon kafka start`."
        ) from exc
    report = TopicReport()
    missing = [s for s in specs if s.name not in existing]
    if missing:
        futures = admin.create_topics(
            [NewTopic(s.name, num_partitions=s.partitions, replication_factor=s.replication_factor, config=s.config)
             for s in missing],
            request_timeout=timeout,
        )
        for name, fut in futures.items():
            try:
                fut.result(timeout=timeout * 2)
                report.created.append(name)
            except KafkaException as exc:
                err = exc.args[0]
                if err.code() == _CKafkaError.TOPIC_ALREADY_EXISTS:
                    report.unchanged.append(name)
                else:
                    raise kafka_error(f"creating topic {name} failed: {err.str()}", err) from exc
    present = [s for s in specs if s.name in existing]
    if present:
        resources = [ConfigResource(ResourceType.TOPIC, s.name) for s in present]
        configs = admin.describe_configs(resources, request_timeout=timeout)
        for spec, resource in zip(present, resources, strict=True):
            problems = _compare(spec, existing[spec.name], _result(configs, resource, timeout))
            if problems:
                report.mismatches.extend(f"{spec.name}: {p}" for p in problems)
            else:
                report.unchanged.append(spec.name)
    if strict and report.mismatches:
        raise TopicMismatchError("; ".join(report.mismatches))
    return report


def _list_topics(admin: AdminClient, reporter: ErrorReporter, timeout: float) -> Any:
    """Cluster metadata within ``timeout``, asked in short slices so that refused credentials raise
    KafkaAuthenticationError as soon as the broker refuses them, not when the timeout ends."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return admin.list_topics(timeout=max(0.05, min(0.5, deadline - time.monotonic())))
        except KafkaException:
            admin.poll(0)  # serves error_cb, which records a refusal
            reporter.raise_if_refused()
            if time.monotonic() >= deadline:
                raise


def _result(configs: dict[Any, Any], resource: Any, timeout: float) -> dict[str, str]:
    for res, fut in configs.items():
        if res.name == resource.name:
            entries = fut.result(timeout=timeout * 2)
            return {k: v.value for k, v in entries.items()}
    return {}


def _compare(spec: TopicSpec, meta: Any, config: dict[str, str]) -> list[str]:
    problems = []
    parts = len(meta.partitions)
    if parts < spec.partitions:
        problems.append(
            f"has {parts} partitions but {spec.partitions} are configured (BEACON_TOPIC_PARTITIONS); "
            "partitions can be added with the admin tools, but keys then move to other partitions: "
            "drain the topic first"
        )
    elif parts > spec.partitions:
        problems.append(f"has {parts} partitions, more than the {spec.partitions} configured")
    if meta.partitions:
        rf = len(next(iter(meta.partitions.values())).replicas)
        if rf != spec.replication_factor:
            problems.append(f"has replication factor {rf} but {spec.replication_factor} is configured")
    for key, want in spec.config.items():
        have = config.get(key)
        if have is not None and have != want:
            problems.append(f"has {key}={have} but {want} is configured")
    return problems



# --- consumer groups and offsets (used by `beacon replay`, `beacon lag`, `beacon scale`) ---------


@dataclass(frozen=True)
class GroupInfo:
    """A consumer group as the broker sees it: state (lower case: empty, stable, dead, ...) and members."""

    group: str
    state: str
    members: tuple[str, ...]

    @property
    def active(self) -> bool:
        return bool(self.members) or self.state not in {"empty", "dead", "unknown"}


def _admin_result(settings: Settings, what: str, future: Any) -> Any:
    timeout = settings.kafka.request_timeout
    try:
        return future.result(timeout=timeout * 2)
    except KafkaException as exc:
        err = _error_of(exc)
        raise kafka_error(f"{what} failed: {err.str() if err is not None else exc}", err) from exc
    except TimeoutError as exc:
        raise KafkaError(
            f"{what}: no answer from Kafka at {settings.kafka.bootstrap} within {timeout * 2:.0f}s. "
            "Is the broker running? See `beacon kafka status`."
        ) from exc


def describe_group(settings: Settings, group: str) -> GroupInfo:
    """The group's state and members (``client_id@host``); a group that never existed is ``dead``."""
    admin = make_admin(settings)
    futures = admin.describe_consumer_groups([group], request_timeout=settings.kafka.request_timeout)
    desc = _admin_result(settings, f"describing group {group}", futures[group])
    state = getattr(desc.state, "name", str(desc.state)).lower()
    return GroupInfo(group, state, tuple(f"{m.client_id}@{m.host}" for m in desc.members))


def topic_partitions(settings: Settings, topic: str, admin: AdminClient | None = None) -> list[int]:
    """The partition numbers of ``topic``; KafkaError if it does not exist. A caller that asks often
    (the console's sampler) passes its own ``admin`` rather than connecting anew each time."""
    admin = make_admin(settings) if admin is None else admin
    try:
        md = admin.list_topics(topic, timeout=settings.kafka.request_timeout)
    except KafkaException as exc:
        raise kafka_error(f"cannot read metadata of {topic} from {settings.kafka.bootstrap}: {exc}",
                          _error_of(exc)) from exc
    meta = md.topics.get(topic)
    if meta is None or meta.error is not None or not meta.partitions:
        raise KafkaError(f"topic {topic} does not exist on {settings.kafka.bootstrap}")
    return sorted(meta.partitions)


def committed_offsets(settings: Settings, group: str, topic: str | None = None) -> dict[tuple[str, int], int | None]:
    """The group's committed offsets per (topic, partition); None where nothing is committed.

    With ``topic`` every partition of it is listed; without, the partitions the group committed.
    """
    from confluent_kafka import ConsumerGroupTopicPartitions

    request = ConsumerGroupTopicPartitions(
        group, [TopicPartition(topic, p) for p in topic_partitions(settings, topic)] if topic else None
    )
    admin = make_admin(settings)
    futures = admin.list_consumer_group_offsets([request], request_timeout=settings.kafka.request_timeout)
    result = _admin_result(settings, f"reading committed offsets of group {group}", futures[group])
    return {
        (tp.topic, tp.partition): (tp.offset if tp.offset >= 0 else None)
        for tp in result.topic_partitions
        if tp.error is None
    }


def list_topic_offsets(settings: Settings, topic: str, partitions: Iterable[int], at: str | int,
                       admin: AdminClient | None = None) -> dict[int, int]:
    """Offsets of ``topic``'s partitions: ``at`` is "earliest", "latest" or a timestamp in ms (the first
    offset whose timestamp is at or after it; -1 where there is none)."""
    from confluent_kafka.admin import OffsetSpec as _OffsetSpec  # type: ignore[attr-defined]

    offset_spec: Any = _OffsetSpec
    if at == "earliest":
        spec = offset_spec.earliest()
    elif at == "latest":
        spec = offset_spec.latest()
    else:
        spec = offset_spec.for_timestamp(int(at))
    admin = make_admin(settings) if admin is None else admin
    futures = admin.list_offsets(
        {TopicPartition(topic, p): spec for p in partitions}, request_timeout=settings.kafka.request_timeout
    )
    return {
        tp.partition: _admin_result(settings, f"listing offsets of {topic} [{tp.partition}]", fut).offset
        for tp, fut in futures.items()
    }


def alter_group_offsets(settings: Settings, group: str, topic: str, offsets: dict[int, int]) -> None:
    """Set the group's committed offsets of ``topic``; the broker refuses while the group has members."""
    from confluent_kafka import ConsumerGroupTopicPartitions

    request = ConsumerGroupTopicPartitions(group, [TopicPartition(topic, p, o) for p, o in sorted(offsets.items())])
    admin = make_admin(settings)
    futures = admin.alter_consumer_group_offsets([request], request_timeout=settings.kafka.request_timeout)
    result = _admin_result(settings, f"setting offsets of group {group} on {topic}", futures[group])
    errors = [f"[{tp.partition}] {tp.error.str()}" for tp in result.topic_partitions if tp.error is not None]
    if errors:
        raise KafkaError(f"setting offsets of group {group} on {topic} failed for " + ", ".join(errors))
