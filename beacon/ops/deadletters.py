"""``beacon dlq``: browse the dead-letter topic and republish chosen records to their source topic.

Records are read with a throwaway consumer that is assigned partitions and never commits, so
browsing changes nothing. A record is named ``<partition>:<offset>`` on the dead-letter topic.
Redrive republishes the original key and value bytes unchanged (they were never re-encoded) to
the source topic named in the record's headers, marking where they came from.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from beacon import kafka
from beacon.config import Settings
from beacon.dlq import DeadLetterInfo, read_dlq_headers
from beacon.errors import BeaconError, KafkaError
from beacon.messages import BeaconMessage
from beacon.trace import trace_headers

if TYPE_CHECKING:
    from beacon.codec import MessageCodec

#: Header added to a redriven record: the dead-letter record it came from (``bm_dlq:<p>:<o>``).
H_REDRIVEN_FROM = "beacon.redriven.from"


@dataclass(frozen=True)
class DeadLetter:
    """One record of the dead-letter topic, with its dead-letter headers (None if it has none)."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    info: DeadLetterInfo | None
    headers: list[tuple[str, bytes]]

    @property
    def ref(self) -> str:
        return f"{self.partition}:{self.offset}"


@dataclass(frozen=True)
class Decoded:
    """A dead letter's value as a BeaconMessage, or why it is not one."""

    message: BeaconMessage | None
    problem: str | None


def parse_ref(text: str) -> tuple[int, int]:
    """``"3:17"`` -> (3, 17)."""
    try:
        part, off = text.split(":", 1)
        return int(part), int(off)
    except ValueError as exc:
        raise BeaconError(f"{text!r} is not a dead-letter reference: write <partition>:<offset>, e.g. 3:17") from exc


def iter_dead_letters(settings: Settings, *, only: Iterable[tuple[int, int]] | None = None) -> Iterator[DeadLetter]:
    """Every record on the dead-letter topic up to its end when called (or only the ``only`` ones)."""
    topic = settings.topics.dlq
    parts = kafka.topic_partitions(settings, topic)
    low = kafka.list_topic_offsets(settings, topic, parts, "earliest")
    high = kafka.list_topic_offsets(settings, topic, parts, "latest")
    wanted: dict[int, set[int]] | None = None
    if only is not None:
        wanted = {}
        for p, o in only:
            wanted.setdefault(p, set()).add(o)
    start = {p: low[p] if wanted is None else max(low[p], min(wanted.get(p, {high[p]}))) for p in parts}
    todo = {p for p in parts if start[p] < high[p] and (wanted is None or p in wanted)}
    if not todo:
        return
    consumer = kafka.make_consumer(settings, f"beacon-dlq-browser-{uuid.uuid4().hex[:8]}")
    try:
        consumer.assign([kafka.TopicPartition(topic, p, start[p]) for p in sorted(todo)])
        idle = 0
        while todo:
            msg = consumer.poll(1.0)
            if msg is None:
                idle += 1
                if idle > max(10, int(settings.kafka.request_timeout * 2)):
                    raise KafkaError(f"reading {topic} stalled; partitions {sorted(todo)} did not reach their end")
                continue
            idle = 0
            if msg.error():
                continue
            p_or_none, o_or_none = msg.partition(), msg.offset()
            if p_or_none is None or o_or_none is None:
                continue
            p, o = p_or_none, o_or_none
            if o + 1 >= high[p]:
                todo.discard(p)
            if o >= high[p] or (wanted is not None and o not in wanted.get(p, set())):
                continue
            raw: Any = msg.headers() or []
            headers: list[tuple[str, bytes]] = [(k, v or b"") for k, v in raw]
            key: Any = msg.key()
            yield DeadLetter(p, o, key, msg.value(), read_dlq_headers(headers), headers)
    finally:
        consumer.close()


def select(
    letters: Iterable[DeadLetter],
    *,
    source_topic: str | None = None,
    error_class: str | None = None,
    origin: str | None = None,
) -> list[DeadLetter]:
    """The dead letters matching every filter given."""
    out = []
    for d in letters:
        if source_topic and (d.info is None or d.info.topic != source_topic):
            continue
        if error_class and (d.info is None or d.info.error_class != error_class):
            continue
        if origin and (d.info is None or d.info.origin != origin):
            continue
        out.append(d)
    return out


_codecs: dict[str, MessageCodec] = {}


def _codec(settings: Settings) -> MessageCodec:
    # Keyed by registry URL: one codec (and schema cache) per registry for this command's run.
    from beacon.codec import MessageCodec

    codec = _codecs.get(settings.registry.url)
    if codec is None:
        codec = _codecs[settings.registry.url] = MessageCodec(settings)
    return codec


def decode(settings: Settings, letter: DeadLetter) -> Decoded:
    """Decode the value as a BeaconMessage of its source topic; never raises."""
    topic = letter.info.topic if letter.info else settings.topics.inbound
    try:
        msg = _codec(settings).decode(letter.value, topic=topic, partition=letter.partition, offset=letter.offset)
    except BeaconError as exc:
        return Decoded(None, f"{type(exc).__name__}: {exc}")
    return Decoded(msg, None)


def summary(decoded: Decoded, width: int = 60) -> str:
    """One line about the content: kind, direction and text of a message, or why it did not decode."""
    if decoded.message is None:
        return f"(not decodable: {decoded.problem})"[:width]
    m = decoded.message
    text = m.text or m.status or m.kind
    return f"{m.direction} {m.kind} {m.user_id}: {text}"[:width]


def redrive(
    settings: Settings,
    letters: list[DeadLetter],
    *,
    on_sent: Callable[[DeadLetter], Any] | None = None,
) -> tuple[int, list[str]]:
    """Republish each record's original key and value to its source topic; (sent, problems).

    Records without dead-letter headers have no known source and are skipped with a problem line.
    """
    producer = kafka.make_producer(settings)
    problems: list[str] = []
    sent = 0

    def delivered(letter: DeadLetter) -> Callable[[Any, Any], None]:
        def cb(err: Any, _msg: Any) -> None:
            nonlocal sent
            if err is not None:
                problems.append(f"{letter.ref}: broker did not acknowledge: {err}")
            else:
                sent += 1
                if on_sent:
                    on_sent(letter)
        return cb

    for letter in letters:
        if letter.info is None or not letter.info.topic:
            problems.append(f"{letter.ref}: no beacon.dlq.source.topic header, so no place to redrive it to")
            continue
        headers: list[tuple[str, str | bytes | None]] = [
            (H_REDRIVEN_FROM, f"{settings.topics.dlq}:{letter.ref}".encode()),
            *trace_headers(letter.headers),  # the message's own trace goes on
        ]
        while True:
            try:
                producer.produce(letter.info.topic, value=letter.value, key=letter.key, headers=headers,
                                 on_delivery=delivered(letter))
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    remaining = producer.flush(max(settings.kafka.request_timeout * 4, 10))
    if remaining:
        problems.append(f"{remaining} record(s) not acknowledged before the timeout; check them with `beacon dlq list`")
    return sent, problems
