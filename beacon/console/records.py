"""Reading records of Beacon's topics for the console, without touching any consumer group.

A throwaway consumer (a fresh group id that never joins: ``assign()`` with explicit offsets, never
``subscribe()``, and no commits) reads a window of one partition, or the newest records of every
partition when looking for a user key. Values are decoded through the registry; the writer's
schema id comes from the Confluent header and its subject versions from the registry.
"""

from __future__ import annotations

import json
import struct
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from beacon import kafka
from beacon.codec import MessageCodec
from beacon.config import Settings
from beacon.errors import BeaconError

#: Most records one page shows.
MAX_RECORDS = 200


@dataclass(frozen=True)
class Record:
    """One record as the console shows it: position, key, headers and the decoded value (or why not)."""

    topic: str
    partition: int
    offset: int
    timestamp: datetime | None
    key: str | None
    headers: list[tuple[str, str]]
    schema_id: int | None
    value: dict[str, Any] | None
    problem: str | None


@dataclass(frozen=True)
class Window:
    """Where a partition's records are: the first offset still kept and the next one to be written."""

    partition: int
    low: int
    high: int


def windows(settings: Settings, topic: str) -> list[Window]:
    parts = kafka.topic_partitions(settings, topic)
    low = kafka.list_topic_offsets(settings, topic, parts, "earliest")
    high = kafka.list_topic_offsets(settings, topic, parts, "latest")
    return [Window(p, low[p], high[p]) for p in parts]


def _text(raw: bytes | str | None) -> str | None:
    if raw is None:
        return None
    return raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


def decode(codec: MessageCodec, topic: str, msg: Any) -> Record:
    """A consumed message as a Record; a value that does not decode keeps its reason."""
    data: bytes | None = msg.value()
    partition, offset = msg.partition(), msg.offset()
    schema_id = struct.unpack_from(">I", data, 1)[0] if data and len(data) >= 5 and data[0] == 0 else None
    value: dict[str, Any] | None = None
    problem = None
    try:
        value = _jsonable(codec.decode_record(data, topic=topic, partition=partition, offset=offset))
    except BeaconError as exc:
        problem = f"{type(exc).__name__}: {exc}"
    kind, stamp = msg.timestamp()
    when = datetime.fromtimestamp(stamp / 1000, UTC) if kind and stamp > 0 else None
    headers = [(k, _text(v) or "") for k, v in (msg.headers() or [])]
    return Record(topic, partition, offset, when, _text(msg.key()), headers, schema_id, value, problem)


def read(settings: Settings, codec: MessageCodec, topic: str, starts: dict[int, tuple[int, int]],
         key: str | None = None, limit: int = MAX_RECORDS) -> list[Record]:
    """Records of ``topic`` from each partition's [start, end) in ``starts``, optionally only those with
    ``key``; at most ``limit``. Never joins a group and never commits."""
    todo = {p: r for p, r in starts.items() if r[0] < r[1]}
    if not todo:
        return []
    consumer = kafka.make_consumer(settings, f"beacon-console-{uuid.uuid4().hex[:8]}")
    out: list[Record] = []
    try:
        consumer.assign([kafka.TopicPartition(topic, p, start) for p, (start, _end) in sorted(todo.items())])
        deadline = time.monotonic() + max(5.0, settings.kafka.request_timeout * 2)
        while todo and time.monotonic() < deadline and len(out) < limit:
            msg = consumer.poll(0.5)
            if msg is None or msg.error():
                continue
            p, o = msg.partition(), msg.offset()
            if p is None or o is None or p not in todo:
                continue
            if o + 1 >= todo[p][1]:
                del todo[p]
            if o >= starts[p][1]:
                continue
            if key is not None and _text(msg.key()) != key:
                continue
            out.append(decode(codec, topic, msg))
    finally:
        consumer.close()
    return sorted(out, key=lambda r: (r.partition, r.offset))


def browse(settings: Settings, codec: MessageCodec, topic: str, partition: int | None, offset: int | None,
           key: str | None, limit: int = 50) -> tuple[list[Window], list[Record]]:
    """The partitions' windows and the records to show: from ``offset`` of ``partition`` on, or the newest
    ``limit`` records of one partition (or of every partition, when looking for a key)."""
    wins = windows(settings, topic)
    limit = min(limit, MAX_RECORDS)
    chosen = [w for w in wins if partition is None or w.partition == partition]
    starts: dict[int, tuple[int, int]] = {}
    for w in chosen:
        if offset is not None and partition is not None:
            start = max(w.low, offset)
            starts[w.partition] = (start, min(w.high, start + limit))
        else:
            depth = MAX_RECORDS * 5 if key else limit
            starts[w.partition] = (max(w.low, w.high - depth), w.high)
    if partition is None and not key:
        # Newest records of the whole topic without a key: a page from each partition would be too much.
        starts = {p: (max(s, e - max(1, limit // max(1, len(starts)))), e) for p, (s, e) in starts.items()}
    return wins, read(settings, codec, topic, starts, key=key, limit=MAX_RECORDS if key else limit)


def pretty(value: dict[str, Any] | None) -> str:
    """A decoded value as indented JSON, without the null fields."""
    if value is None:
        return ""
    return json.dumps({k: v for k, v in value.items() if v not in (None, {}, [])}, indent=1, ensure_ascii=False)
